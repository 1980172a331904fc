"""Conditional retrieval's user tower: an interest ID as one more input (SPEC row 7, docs/conditional.md).

`model/conditioning` chooses how the condition enters the user tower:

- `none`: no condition (the model as it was before this group existed; model.pt unchanged);
- `early_fusion`: the condition's embedding is one more user field, LayerNormed and crossed with
  the others (a row of the tower's shared torchrec table collection);
- `late_fusion`: the condition's embedding (width `output_dim`, its own torchrec collection) is
  added to the user tower's projected output, before the L2 normalisation.

The condition of a training example (`source`) is one of the engaged pin's interest tags
(`item_interest`) or the interest the logging policy surfaced the pin through (`source_interest`,
the events' `interest` column). Its table has one row per interest plus a last "no interest" row:
exploration impressions (NO_INTEREST), untagged pins, and users served without any interest.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from ebr.data.batching import CONDITION
from ebr.data.schema import NO_INTEREST, InteractionData, Split
from ebr.models.tower import CrossingFactory, Tower, TowerSpec

if TYPE_CHECKING:  # the assembly builds models through ebr.models.artifact, which imports this module
    from ebr.models.assembly import Towers

MODES = ("none", "early_fusion", "late_fusion")
SOURCES = ("item_interest", "source_interest")
# the pin feature holding interest tags (primary first); MovieLens stores its genres there too
PIN_INTEREST_FEATURE = "interest"


@dataclass(frozen=True)
class ConditioningConfig:
    """The `model/conditioning` part (built by Hydra from the group's option).

    Args:
        mode: `none`, `early_fusion` or `late_fusion`.
        source: the training condition: `item_interest` or `source_interest`.
    """

    mode: str = "none"
    source: str = "item_interest"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"model.conditioning.mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.source not in SOURCES:
            raise ValueError(
                f"model.conditioning.source must be one of {', '.join(SOURCES)}, got {self.source!r}"
            )

    @property
    def active(self) -> bool:
        return self.mode != "none"

    def apply(self, towers: Towers, data: InteractionData, split: Split) -> Towers:
        """The towers with the condition (a TowerPart): the condition table's rows in the network
        config, early fusion's user field, each training row's condition; unchanged for `none`.

        Args:
            towers: the towers as the parts before this one left them.
            data: the data set (its interests).
            split: the fitted split (not read: conditions are computed per window when batched).
        """
        if not self.active:
            return towers
        rows = condition_rows(data)
        return dataclasses.replace(
            towers,
            user_spec=conditioned_user_spec(towers.user_spec, self, rows),
            network={**towers.network, "conditioning": {"mode": self.mode, "rows": rows}},
            condition_of=functools.partial(training_conditions, data=data, source=self.source),
        )

    @classmethod
    def of(cls, node: Mapping[str, Any] | None) -> ConditioningConfig:
        """The config from a plain mapping (None: `none`), refusing unknown keys by name.

        Args:
            node: the `model.conditioning` node as plain data.
        """
        if node is None:
            return cls()
        # the node's `_target_` names this class: Hydra's, not a setting
        node = {key: value for key, value in node.items() if key != "_target_"}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(node) - known)
        if unknown:
            raise ValueError(f"model.conditioning: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(node))


def condition_rows(data: InteractionData) -> int:
    """Rows of the condition table: one per interest of the data, plus the "no interest" row.

    Raises:
        ValueError: for data without interests (naming `model.conditioning`).
    """
    if data.n_interests < 1 or PIN_INTEREST_FEATURE not in data.pins.categorical:
        raise ValueError(
            f"model.conditioning: {data.name} has no interests (n_interests={data.n_interests}, pin"
            f" features {sorted(data.pins.categorical)}); use model/conditioning=none"
        )
    return int(data.n_interests) + 1


def training_conditions(events: pd.DataFrame, data: InteractionData, source: str) -> np.ndarray:
    """The condition of every engagement row: one of its pin's tags, or its logged source interest.

    A pin with several tags (a MovieLens movie's genres) conditions each engagement on one of them,
    drawn uniformly and reproducibly (a fixed seed over the window's rows): every tag a pin carries
    is trained as a condition, as per-interest serving will query it. Always the first tag would
    leave a genre that sorts late (Drama after Action and Comedy) trained only on the movies that
    carry nothing earlier. A pin with one tag always gets it.

    Args:
        events: engagement rows (`pin`, `interest` columns).
        data: the data set (its pins' tags and `n_interests`).
        source: `item_interest` or `source_interest`.
    """
    none_row = int(data.n_interests)
    if source == "item_interest":
        feature = data.pins.categorical[PIN_INTEREST_FEATURE]
        pins = events["pin"].to_numpy(np.int64)
        lengths = feature.lengths()[pins]
        pick = np.floor(np.random.default_rng(0).random(len(pins)) * np.maximum(lengths, 1)).astype(np.int64)
        conditions = np.full(len(pins), none_row, dtype=np.int64)
        tagged = lengths > 0
        conditions[tagged] = feature.values[feature.offsets[:-1][pins[tagged]] + pick[tagged]]
        return conditions
    logged = events["interest"].to_numpy(np.int64)
    # an exploration impression came through no interest: it trains the "no interest" row
    return np.where(logged == NO_INTEREST, none_row, logged).astype(np.int64)


def conditioned_user_spec(spec: TowerSpec, config: ConditioningConfig, rows: int) -> TowerSpec:
    """The user tower's spec: early fusion adds the condition as its last categorical field.

    Args:
        spec: the unconditioned user spec.
        config: the conditioning mode.
        rows: the condition table's rows (`condition_rows`).
    """
    if CONDITION in spec.sparse:
        raise ValueError(f"features.user_sparse: the user feature name {CONDITION!r} is reserved")
    if config.mode != "early_fusion":
        return spec
    return dataclasses.replace(spec, sparse={**spec.sparse, CONDITION: int(rows)})


def check_conditions(conditions: np.ndarray, rows: int) -> np.ndarray:
    """Interest ids to condition on, refused when the model has no row for one (never a silent zero).

    Args:
        conditions: interest ids (the "no interest" row is `rows - 1`).
        rows: the model's condition rows.
    """
    conditions = np.asarray(conditions, dtype=np.int64)
    bad = (conditions < 0) | (conditions >= rows)
    if bad.any():
        raise ValueError(
            f"serving: interest id {int(conditions[bad][0])} is unknown to the conditional model"
            f" (it was trained with interest ids 0..{rows - 2} and the no-interest row {rows - 1})"
        )
    return conditions


class LateFusionTower(Tower):
    """A user tower whose projected output is summed with the condition's embedding before the norm.

    The KJT it reads carries the condition under the key `CONDITION` (ebr.data.batching); the other
    keys go through the ordinary tower. The condition table (width `output_dim`) is a torchrec
    collection of its own, sharded and optimised with the others.

    Args:
        spec: the user tower's features (without the condition).
        crossing: builds the crossing module.
        rows: condition table rows.
        embedding_dim: width of every field.
        output_dim: embedding width d.
        dense_hidden: hidden widths of the dense MLP.
        id_freeze: see Tower.
        id_dropout: see Tower.
    """

    def __init__(
        self,
        spec: TowerSpec,
        crossing: CrossingFactory,
        rows: int,
        embedding_dim: int = 32,
        output_dim: int = 64,
        dense_hidden: Sequence[int] = (64,),
        id_freeze: bool = False,
        id_dropout: float = 0.0,
    ) -> None:
        super().__init__(spec, crossing, embedding_dim, output_dim, dense_hidden, id_freeze, id_dropout)
        self.condition_ebc = EmbeddingBagCollection(
            tables=[
                EmbeddingBagConfig(
                    name=f"{spec.name}__{CONDITION}_late",
                    embedding_dim=output_dim,
                    num_embeddings=int(rows),
                    feature_names=[CONDITION],
                    pooling=PoolingType.SUM,
                )
            ],
            is_weighted=True,
        )

    def forward(self, sparse: KeyedJaggedTensor, dense: torch.Tensor) -> torch.Tensor:
        keys = sparse.keys()
        if CONDITION not in keys:
            raise ValueError(f"{self.spec.name} tower: late fusion needs the {CONDITION!r} input")
        at = keys.index(CONDITION)
        rest = sparse.permute([i for i in range(len(keys)) if i != at])
        condition = self.condition_ebc(sparse.permute([at])).to_dict()[CONDITION]
        fields = self.fields(rest, dense)
        projected = self.projection(self.crossing(self.field_norm(fields).flatten(1)))
        return F.normalize(projected + condition, dim=-1)
