"""The two-tower retrieval model: score(user, pin) = <user_tower(user), pin_tower(pin)>."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from ebr.models.conditioning import LateFusionTower
from ebr.models.features import ID_FEATURES
from ebr.models.sequence import SequenceTower
from ebr.models.tower import CrossingFactory, Tower, TowerSpec

# the network config's keys of the optional parts, as `model.pt` saves them (flat, beside the widths)
PART_KEYS = ("id_freeze", "id_dropout", "conditioning", "sequence")


@dataclass(frozen=True)
class TowerParts:
    """What the optional parts set inside the towers (the network config's `PART_KEYS`).

    Args:
        id_freeze: freeze the towers' separate (pre-trained) ID tables, where their specs have one.
        id_dropout: per-example probability of dropping the whole ID vector in training.
        conditioning: conditional retrieval's `{"mode", "rows"}` (ebr.models.conditioning; early
            fusion's field is in the user spec, late fusion builds a LateFusionTower); None: none.
        sequence: the sequence user tower's encoder settings (ebr.models.sequence; the
            `model/user_encoder=sequence` part); None: the bag tower.
    """

    id_freeze: bool = False
    id_dropout: float = 0.0
    conditioning: Mapping[str, Any] | None = None
    sequence: Mapping[str, Any] | None = None


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
        late_fusion = self.conditioning is not None and self.conditioning["mode"] == "late_fusion"
        if parts.sequence is not None:
            if late_fusion:
                raise ValueError(
                    "model/user_encoder=sequence does not combine with model/conditioning=late_fusion"
                )
            self.user_tower = SequenceTower(
                user_spec, crossing, embedding_dim, output_dim, dense_hidden, sequence=parts.sequence, **ids
            )
        elif late_fusion:
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
        if isinstance(self.user_tower, SequenceTower) and self.user_tower.sequence.pins is None:
            self.user_tower.pin_lookup = self.pin_ids

    def pin_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """(n, embedding_dim): rows of the pin tower's ID table (one id each), for the sequence
        tower's `pin_table=shared`; looked up through the pin tower's collection as it is now
        (sharded once the trainer shards it).

        Args:
            ids: (n,) pin ids.
        """
        tower, feature = self.pin_tower, ID_FEATURES["pin"]
        ones = torch.ones_like(ids, dtype=torch.int32)
        if tower.spec.id_feature == feature:
            return tower.id_field(
                KeyedJaggedTensor.from_lengths_sync(keys=[feature], values=ids, lengths=ones)
            )
        if feature not in tower.feature_names or tower.ebc is None:
            raise ValueError(f"model.user_encoder.pin_table=shared needs the pin tower's {feature!r} feature")
        keys = [name for name in tower.feature_names if name != tower.spec.id_feature]
        lengths = torch.cat([ones if name == feature else torch.zeros_like(ones) for name in keys])
        keyed = KeyedJaggedTensor.from_lengths_sync(
            keys=keys, values=ids, lengths=lengths, weights=torch.ones(len(ids), device=ids.device)
        )
        return tower.ebc(keyed).to_dict()[feature]

    def forward(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(user embeddings, engaged-pin embeddings, random-negative embeddings or None) of a Batch.

        A batch with the dense all-action objective's rows (`batch.positions`) gives one row per
        draw instead: the user embedding after the draw's sequence position and its target pin's.
        """
        if batch.positions is not None:
            draws = batch.positions
            user = self.user_tower.position_embeddings(
                batch.user.sparse, batch.user.dense, draws.examples, draws.positions
            )
            pin = self.pin_tower(draws.pin.sparse, draws.pin.dense)
        else:
            user = self.user_tower(batch.user.sparse, batch.user.dense)
            pin = self.pin_tower(batch.pin.sparse, batch.pin.dense)
        negatives = None
        if batch.negatives is not None:
            negatives = self.pin_tower(batch.negatives.sparse, batch.negatives.dense)
        return user, pin, negatives
