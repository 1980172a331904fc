"""The two-tower retrieval model: score(user, pin) = <user_tower(user), pin_tower(pin)>."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ebr.models.conditioning import LateFusionTower
from ebr.models.tower import CrossingFactory, Tower, TowerSpec

# the network config's keys of the optional parts, as `model.pt` saves them (flat, beside the widths)
PART_KEYS = ("id_freeze", "id_dropout", "conditioning")


@dataclass(frozen=True)
class TowerParts:
    """What the optional parts set inside the towers (the network config's `PART_KEYS`).

    Args:
        id_freeze: freeze the towers' separate (pre-trained) ID tables, where their specs have one.
        id_dropout: per-example probability of dropping the whole ID vector in training.
        conditioning: conditional retrieval's `{"mode", "rows"}` (ebr.models.conditioning; early
            fusion's field is in the user spec, late fusion builds a LateFusionTower); None: none.
    """

    id_freeze: bool = False
    id_dropout: float = 0.0
    conditioning: Mapping[str, Any] | None = None


class TwoTowerModel(nn.Module):
    """A user tower and a pin tower producing L2-normalised embeddings of the same width.

    Args:
        user_spec: the user tower's input features.
        pin_spec: the pin tower's input features.
        crossing: crossing factory used by both towers unless `pin_crossing` is given.
        pin_crossing: a different crossing factory for the pin tower (None: same as users).
        embedding_dim: width of every feature field.
        output_dim: embedding width d.
        dense_hidden: hidden widths of each tower's dense-feature MLP.
        parts: what the optional parts set (ID tables' freeze and dropout, conditioning); None: none.
    """

    def __init__(
        self,
        user_spec: TowerSpec,
        pin_spec: TowerSpec,
        crossing: CrossingFactory,
        pin_crossing: CrossingFactory | None = None,
        embedding_dim: int = 32,
        output_dim: int = 64,
        dense_hidden: Sequence[int] = (64,),
        parts: TowerParts | None = None,
    ) -> None:
        super().__init__()
        parts = parts or TowerParts()
        ids = {"id_freeze": parts.id_freeze, "id_dropout": parts.id_dropout}
        self.conditioning = dict(parts.conditioning) if parts.conditioning else None
        if self.conditioning is not None and self.conditioning["mode"] == "late_fusion":
            self.user_tower: Tower = LateFusionTower(
                user_spec,
                crossing,
                int(self.conditioning["rows"]),
                embedding_dim,
                output_dim,
                dense_hidden,
                **ids,
            )
        else:
            self.user_tower = Tower(user_spec, crossing, embedding_dim, output_dim, dense_hidden, **ids)
        self.pin_tower = Tower(
            pin_spec, pin_crossing or crossing, embedding_dim, output_dim, dense_hidden, **ids
        )
        self.output_dim = output_dim

    def forward(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(user embeddings, engaged-pin embeddings, random-negative embeddings or None) of a Batch."""
        user = self.user_tower(batch.user.sparse, batch.user.dense)
        pin = self.pin_tower(batch.pin.sparse, batch.pin.dense)
        negatives = None
        if batch.negatives is not None:
            negatives = self.pin_tower(batch.negatives.sparse, batch.negatives.dense)
        return user, pin, negatives
