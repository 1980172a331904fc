"""`model/user_encoder`: how the user tower reads the user's past engagements.

- `bag` (the default): the user tower as it was before this group existed (model.pt unchanged);
  `features.history=true` adds the order-free bag of training-window pins (ebr.data.history).
- `sequence`: the user's last `length` engagements as a sequence through a causal Transformer
  (ebr.models.sequence), one more user field. A training example reads its user's engagements
  strictly before its own time; serving and the validation loss read the fitted training window's
  last ones (ebr.data.sequences).

Objectives (`objective`), both the sampled softmax with logQ of `train.logq`:

- `sampled_softmax`: each example's full sequence predicts its engaged pin (the next engagement);
- `dense_all_action` (PinnerFormer): each example gives `samples` draws; a draw's position of the
  sequence predicts an engagement drawn from those after it within `horizon_days` (the sequence's
  later positions and the example's own engagement); the softmax runs over the batch's draws.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ebr.data.history import HISTORY, history_batches
from ebr.data.schema import SECONDS_PER_DAY, InteractionData, Split
from ebr.data.sequences import SEQUENCE_FEATURES, ExampleSequences, SequenceBatches, with_sequences
from ebr.models.assembly import Towers
from ebr.models.features import ID_FEATURES
from ebr.models.sequence import PIN_TABLES, POOLINGS

KINDS = ("bag", "sequence")
OBJECTIVES = ("sampled_softmax", "dense_all_action")


def with_causal_history(towers: Towers, features: Mapping[str, Any]) -> Towers:
    """The towers whose training examples read the history bag as it stood at their own time
    (`features.history_causal`, ebr.data.history); unchanged when that is off or the user tower
    does not read "history". Serving and the validation loss read the user table's bag.

    Args:
        towers: the towers as the parts left them (their `sequences_of` is kept beside the bag).
        features: the `features` config node (`history_causal`, `history_length`).
    """
    if not features.get("history_causal", False) or HISTORY not in towers.features["user_sparse"]:
        return towers
    return dataclasses.replace(
        towers,
        sequences_of=functools.partial(
            history_batches, length=int(features["history_length"]), inner=towers.sequences_of
        ),
        manifest={**towers.manifest, "history_bag": "causal"},
    )


def sequence_batches(events: pd.DataFrame, length: int, samples: int, horizon: int) -> SequenceBatches:
    """The training window's example sequences and dense draws (what the data module calls).

    Args:
        events: the training window.
        length: positions a sequence holds.
        samples: dense all-action draws per example (0: none).
        horizon: seconds after a position within which its draws' targets lie.
    """
    return SequenceBatches(ExampleSequences(events, length), samples, horizon)


@dataclass(frozen=True)
class UserEncoderConfig:
    """The `model/user_encoder` part (built by Hydra from the group's option).

    Args:
        kind: `bag` or `sequence`.
        length: (sequence) the most engagements a sequence holds (N).
        layers: (sequence) Transformer layers.
        heads: (sequence) attention heads (dividing `width`).
        width: (sequence) the Transformer's width.
        dropout: (sequence) dropout inside the Transformer.
        pooling: (sequence) `last` (the newest position's state) or `attention`.
        pin_table: (sequence) `own` (the encoder's own pin table) or `shared` (the pin tower's
            `pin_id` table).
        objective: (sequence) `sampled_softmax` or `dense_all_action`.
        samples: (dense_all_action) draws per example.
        horizon_days: (dense_all_action) the window after a position its targets come from.
    """

    kind: str = "bag"
    length: int = 50
    layers: int = 2
    heads: int = 2
    width: int = 64
    dropout: float = 0.1
    pooling: str = "last"
    pin_table: str = "own"
    objective: str = "sampled_softmax"
    samples: int = 4
    horizon_days: float = 14.0

    def __post_init__(self) -> None:
        choices = {"kind": KINDS, "pooling": POOLINGS, "pin_table": PIN_TABLES, "objective": OBJECTIVES}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(
                    f"model.user_encoder.{key}={getattr(self, key)!r} is not one of {list(allowed)}"
                )
        if self.length < 1 or self.samples < 1 or self.horizon_days <= 0:
            raise ValueError(
                "model.user_encoder.length, samples and horizon_days must be positive, got"
                f" {self.length}, {self.samples}, {self.horizon_days}"
            )
        if self.objective == "dense_all_action" and self.pooling != "last":
            # the per-position states are the objective's embeddings: an attention pooling would
            # be a parameter the objective never trains
            raise ValueError("model.user_encoder.objective=dense_all_action needs pooling=last")

    @property
    def active(self) -> bool:
        return self.kind == "sequence"

    def prepare(self, data: InteractionData, split: Split) -> InteractionData:
        """The data the towers read: with each user's serving sequence (`sequence`), else as is.

        Args:
            data: the data set.
            split: the fitted split (its training window).
        """
        return with_sequences(data, split, self.length) if self.active else data

    def apply(self, towers: Towers, data: InteractionData, split: Split) -> Towers:
        """The towers with the sequence user tower (a TowerPart; unchanged for `bag`).

        Args:
            towers: the towers as the parts before this one left them.
            data: the data set (prepared: its user table holds the sequences).
            split: the fitted split (not read: the examples' sequences are built when batched).
        """
        if not self.active:
            return towers
        if self.pin_table == "shared" and ID_FEATURES["pin"] not in towers.features["pin_sparse"]:
            raise ValueError(
                "model.user_encoder.pin_table=shared needs the pin tower's pin_id feature"
                f" (features.pin_sparse: {towers.features['pin_sparse']})"
            )
        user_sparse = [f for f in towers.features["user_sparse"] if f not in SEQUENCE_FEATURES]
        spec = towers.user_spec
        spec = dataclasses.replace(
            spec, sparse={f: c for f, c in spec.sparse.items() if f not in SEQUENCE_FEATURES}
        )
        sequence = {
            "pin_rows": int(data.pins.n_rows),
            **{key: getattr(self, key) for key in ("length", "layers", "heads", "width", "dropout")},
            "pooling": self.pooling,
            "pin_table": self.pin_table,
        }
        samples = self.samples if self.objective == "dense_all_action" else 0
        horizon = int(self.horizon_days * SECONDS_PER_DAY)
        return dataclasses.replace(
            towers,
            features={**towers.features, "user_sparse": [*user_sparse, *SEQUENCE_FEATURES]},
            user_spec=spec,
            network={**towers.network, "sequence": sequence},
            sequences_of=functools.partial(
                sequence_batches, length=self.length, samples=samples, horizon=horizon
            ),
            manifest={**towers.manifest, "user_encoder": {"kind": self.kind, "objective": self.objective}},
        )
