"""Vectorised batch construction: entity rows -> torchrec KeyedJaggedTensor + dense tensor.

A batch is built from numpy index arrays in one pass per feature (CSR gathers), never
with a per-example Python loop.

Every categorical feature is a bag whose pooled embedding is a weighted average: a feature's own
weights (e.g. a user's interest weights) normalised to sum to 1 per bag, or 1 / bag size when it has
none. The KeyedJaggedTensor carries these weights, so a tower pools by weighted sum.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from ebr.data.csr import rows_of_values
from ebr.data.history import HISTORY
from ebr.data.schema import FeatureTable

# Features listing the pins a user engaged with: a training example's own pin is removed from them.
HISTORY_FEATURES = frozenset({HISTORY})
# The user-tower input key of conditional retrieval's interest (ebr.models.conditioning): one id per
# example, appended to the user features' bags; never a feature of the user table.
CONDITION = "condition"


@dataclass
class TowerInput:
    """The inputs of one tower for a batch of entities.

    Args:
        sparse: one key per categorical feature, one bag per entity.
        dense: float32 tensor of shape (batch, dense_width) (width may be 0).
        ids: the entity row ids (int64), for ID-aware losses and bookkeeping.
    """

    sparse: KeyedJaggedTensor
    dense: torch.Tensor
    ids: torch.Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> TowerInput:
        return TowerInput(
            self.sparse.to(device, non_blocking=non_blocking),
            self.dense.to(device, non_blocking=non_blocking),
            self.ids.to(device, non_blocking=non_blocking),
        )

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@dataclass
class PositionTargets:
    """The dense all-action objective's rows (ebr.data.sequences): sequence positions and the
    future engagements they predict.

    Args:
        examples: (P,) the batch row of each draw.
        positions: (P,) its position in that row's sequence (0: the oldest).
        pin: pin-tower inputs of each draw's target pin.
    """

    examples: torch.Tensor
    positions: torch.Tensor
    pin: TowerInput

    def to(self, device: torch.device | str, non_blocking: bool = False) -> PositionTargets:
        return PositionTargets(
            self.examples.to(device, non_blocking=non_blocking),
            self.positions.to(device, non_blocking=non_blocking),
            self.pin.to(device, non_blocking),
        )


@dataclass
class Batch:
    """A training batch of (user, engaged pin) pairs, plus optional random negatives.

    Args:
        user: user-tower inputs, one row per example.
        pin: pin-tower inputs of each example's engaged pin.
        negatives: pin-tower inputs of extra random negatives shared by the batch, or None.
        positions: the dense all-action objective's rows (the sequence tower), or None.
    """

    user: TowerInput
    pin: TowerInput
    negatives: TowerInput | None = None
    positions: PositionTargets | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return Batch(
            self.user.to(device, non_blocking),
            self.pin.to(device, non_blocking),
            None if self.negatives is None else self.negatives.to(device, non_blocking),
            None if self.positions is None else self.positions.to(device, non_blocking),
        )

    def __len__(self) -> int:
        return len(self.user)


class FeatureGatherer:
    """Builds TowerInput for any set of rows of one feature table.

    Args:
        table: the user or pin feature table.
        sparse_features: categorical feature names to emit, in this order (KJT keys).
        dense_features: dense feature names to stack, in this order.
        source: a name for error messages (e.g. "users").
    """

    def __init__(
        self,
        table: FeatureTable,
        sparse_features: Sequence[str],
        dense_features: Sequence[str],
        source: str = "table",
    ) -> None:
        for name in sparse_features:
            if name not in table.categorical:
                raise KeyError(
                    f"{source}: no categorical feature '{name}'; available: {sorted(table.categorical)}"
                )
        for name in dense_features:
            if name not in table.dense:
                raise KeyError(f"{source}: no dense feature '{name}'; available: {sorted(table.dense)}")
        self.table = table
        self.sparse_features = list(sparse_features)
        self.dense_features = list(dense_features)
        self._dense = table.dense_matrix(self.dense_features)

    def __call__(
        self,
        rows: np.ndarray,
        targets: np.ndarray | None = None,
        overrides: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> TowerInput:
        """Inputs of `rows`; with `targets`, each row's target id is dropped from its history bag.

        Args:
            rows: entity row ids.
            targets: per row, the id a training example predicts (None at serving time). A
                history feature must not contain the label it is trained to predict.
            overrides: {feature: (bag lengths, values)} used instead of the table's bags of these
                features (a training example's own sequence, ebr.data.sequences); None: none.
        """
        rows = np.asarray(rows, dtype=np.int64)
        overrides = overrides or {}
        lengths, values, weights = [], [], []
        for name in self.sparse_features:
            if name in overrides:
                feature_lengths, feature_values = overrides[name]
                feature_weights = None
            else:
                feature_lengths, feature_values, feature_weights = self.table.categorical[name].gather(rows)
            if targets is not None and name in HISTORY_FEATURES:
                feature_lengths, keep = _drop_targets(feature_lengths, feature_values, targets)
                feature_values = feature_values[keep]
                feature_weights = None if feature_weights is None else feature_weights[keep]
            lengths.append(feature_lengths)
            values.append(feature_values)
            weights.append(bag_weights(feature_lengths, feature_weights))
        sparse = KeyedJaggedTensor.from_lengths_sync(
            keys=self.sparse_features,
            values=torch.from_numpy(np.concatenate(values) if values else np.zeros(0, np.int64)),
            lengths=torch.from_numpy(
                np.concatenate(lengths).astype(np.int32) if lengths else np.zeros(0, np.int32)
            ),
            weights=torch.from_numpy(np.concatenate(weights) if weights else np.zeros(0, np.float32)),
        )
        dense = torch.from_numpy(np.ascontiguousarray(self._dense[rows]))
        return TowerInput(sparse=sparse, dense=dense, ids=torch.from_numpy(rows))


def _drop_targets(
    lengths: np.ndarray, values: np.ndarray, targets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(bag sizes after the drop, per-value keep mask): bag i loses every value equal to targets[i]."""
    row_of_value = rows_of_values(lengths)
    keep = values != np.asarray(targets, dtype=np.int64)[row_of_value]
    return np.bincount(row_of_value[keep], minlength=len(lengths)).astype(lengths.dtype), keep


def bag_weights(lengths: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """Per-value float32 weights that make each bag's weighted sum a weighted average.

    Args:
        lengths: bag sizes.
        weights: the feature's own non-negative weights aligned with the values, or None (uniform).
            A bag whose own weights sum to 0 is averaged uniformly.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    row_of_value = rows_of_values(lengths)
    uniform = 1.0 / np.maximum(lengths, 1)
    if weights is None:
        return uniform[row_of_value].astype(np.float32)
    weights = np.asarray(weights, dtype=np.float64)
    totals = np.bincount(row_of_value, weights=weights, minlength=len(lengths))
    safe = np.where(totals > 0, totals, 1.0)
    normalised = np.where(totals[row_of_value] > 0, weights / safe[row_of_value], uniform[row_of_value])
    return normalised.astype(np.float32)


def make_batch(
    user_gatherer: FeatureGatherer,
    pin_gatherer: FeatureGatherer,
    users: np.ndarray,
    pins: np.ndarray,
    negative_pins: np.ndarray | None = None,
    conditions: np.ndarray | None = None,
    sequences: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    draws: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> Batch:
    """One training batch from aligned arrays of user rows and engaged pin rows.

    Args:
        user_gatherer: builds the user-tower inputs (each user's history bag loses its example's pin).
        pin_gatherer: builds the pin-tower inputs.
        users: user row of each example.
        pins: engaged pin row of each example.
        negative_pins: pin rows of extra random negatives shared by the batch, or None.
        conditions: each example's condition interest (conditional retrieval), or None.
        sequences: each example's own sequence bags (ebr.data.sequences), or None.
        draws: the dense all-action objective's (example, position, target pin) arrays, or None.
    """
    user = user_gatherer(users, targets=pins, overrides=sequences)
    positions = None
    if draws is not None:
        examples, at, targets = draws
        positions = PositionTargets(torch.from_numpy(examples), torch.from_numpy(at), pin_gatherer(targets))
    return Batch(
        user=user if conditions is None else with_condition(user, conditions),
        pin=pin_gatherer(pins),
        negatives=None if negative_pins is None else pin_gatherer(negative_pins),
        positions=positions,
    )


def with_condition(inputs: TowerInput, conditions: np.ndarray) -> TowerInput:
    """The user-tower inputs with one more bag per row: its condition interest, under `CONDITION`.

    Args:
        inputs: the user-tower inputs of a batch.
        conditions: one interest id per row.
    """
    conditions = np.asarray(conditions, dtype=np.int64)
    if conditions.shape != (len(inputs),):
        raise ValueError(f"conditions: {conditions.shape} for a batch of {len(inputs)} rows")
    sparse = inputs.sparse
    if CONDITION in list(sparse.keys()):
        raise ValueError(f"the user inputs already hold a {CONDITION!r} bag")
    # a KJT's values are stored key after key, so a new last key appends its values
    weights = sparse.weights_or_none()
    sparse = KeyedJaggedTensor.from_lengths_sync(
        keys=[*sparse.keys(), CONDITION],
        values=torch.cat([sparse.values(), torch.from_numpy(conditions).to(sparse.values().dtype)]),
        lengths=torch.cat([sparse.lengths(), torch.ones(len(conditions), dtype=sparse.lengths().dtype)]),
        weights=None
        if weights is None
        else torch.cat([weights, torch.ones(len(conditions), dtype=weights.dtype)]),
    )
    return TowerInput(sparse=sparse, dense=inputs.dense, ids=inputs.ids)
