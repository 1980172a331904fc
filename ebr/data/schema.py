"""The canonical interaction-data schema every loader produces and every consumer reads.

Events are one row per logged event; users and pins are feature tables indexed by a dense
row id (0..n-1), so an event's `user` / `pin` is directly a row of its table.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd

from ebr.data.csr import Ragged, offsets_from_lengths

SECONDS_PER_DAY = 86_400
# `data.duplicates`: what a load does with exact duplicate event rows (every column equal)
DUPLICATE_POLICIES = ("keep", "drop", "error")

log = logging.getLogger("ebr.data")

IMPRESSION, CLICK, REPIN = 0, 1, 2
EVENT_NAMES = {IMPRESSION: "impression", CLICK: "click", REPIN: "repin"}
# The `interest` of an event that came through no interest (exploration, or data that does not log
# it); the one "no interest" value of ebr.
NO_INTEREST = -1

# column -> numpy dtype kind accepted ("i" signed/unsigned integer)
EVENT_COLUMNS: dict[str, str] = {
    "user": "i",
    "pin": "i",
    "timestamp": "i",
    "event": "i",
    "interest": "i",
}


class DataValidationError(ValueError):
    """Bad input data; the message names the source file, the column and the first bad row."""


@dataclass(frozen=True)
class CategoricalFeature(Ragged):
    """A categorical feature of a table, possibly multi-valued: one bag of ids per row (a `Ragged`).

    A bag may hold its ids in any order and repeat them (unlike a `Csr` row).

    Args:
        offsets: int64 array of length n_rows + 1; row i's values are values[offsets[i]:offsets[i+1]]
            (build it with `ebr.data.csr.offsets_from_lengths`).
        values: int64 ids in [0, cardinality).
        cardinality: number of distinct ids (the embedding-table size).
        weights: optional float32 weights aligned with `values` (e.g. interest weights).
    """

    cardinality: int
    weights: np.ndarray | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.values.size and (self.values.min() < 0 or self.values.max() >= self.cardinality):
            raise DataValidationError(
                f"CategoricalFeature values must be in [0, {self.cardinality}), "
                f"got {self.values.min()}..{self.values.max()}"
            )
        if self.weights is not None and len(self.weights) != len(self.values):
            raise DataValidationError(
                f"CategoricalFeature has {len(self.weights)} weights for {len(self.values)} values"
            )

    @staticmethod
    def single(values: np.ndarray, cardinality: int) -> CategoricalFeature:
        """One value per row.

        Args:
            values: the value of each row.
            cardinality: number of distinct ids.
        """
        values = np.asarray(values, dtype=np.int64)
        return CategoricalFeature(
            offsets_from_lengths(np.ones(len(values), dtype=np.int64)), values, int(cardinality)
        )

    def gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Vectorised gather: (lengths, values, weights) of `rows`, in row order.

        Args:
            rows: row indices (may repeat).
        """
        lengths, index = self.take(rows)
        weights = None if self.weights is None else self.weights[index]
        return lengths, self.values[index], weights


@dataclass(frozen=True)
class FeatureTable:
    """Features of one entity type (users or pins), one row per entity id.

    Args:
        n_rows: number of entities.
        categorical: sparse features by name (embedded by the model through embedding tables).
        dense: float32 arrays of shape (n_rows,) or (n_rows, k) by name.
        meta: per-row attributes that are not model inputs (creation time, signatures, ...).
    """

    n_rows: int
    categorical: dict[str, CategoricalFeature] = field(default_factory=dict)
    dense: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, feature in self.categorical.items():
            if feature.n_rows != self.n_rows:
                raise DataValidationError(
                    f"categorical feature '{name}' has {feature.n_rows} rows, table has {self.n_rows}"
                )
        for kind, arrays in (("dense", self.dense), ("meta", self.meta)):
            for name, array in arrays.items():
                if len(array) != self.n_rows:
                    raise DataValidationError(
                        f"{kind} feature '{name}' has {len(array)} rows, table has {self.n_rows}"
                    )

    def dense_matrix(self, names: list[str] | None = None) -> np.ndarray:
        """Dense features stacked as a float32 (n_rows, total_width) matrix."""
        names = list(self.dense) if names is None else names
        columns = [np.asarray(self.dense[n], dtype=np.float32).reshape(self.n_rows, -1) for n in names]
        if not columns:
            return np.zeros((self.n_rows, 0), dtype=np.float32)
        return np.concatenate(columns, axis=1)


@dataclass(frozen=True)
class InteractionData:
    """A whole data set in the canonical schema.

    Args:
        name: short name used in logs and manifests.
        events: DataFrame with columns user, pin, timestamp (int64 seconds), event
            (IMPRESSION / CLICK / REPIN), interest (the interest through which the pin was
            surfaced, NO_INTEREST when unknown).
        users: user feature table; events.user indexes its rows.
        pins: pin feature table; events.pin indexes its rows.
        n_interests: size of the interest vocabulary (0 when the data has none).
        source: where the data came from (a path, or "synthetic:<hash>"), for error messages.
        truth: the true engagement model when the data is simulated (None for real data).
        duplicate_rows: exact duplicate event rows found when loading (dropped or kept as
            `data.duplicates` says; `apply_duplicate_policy`).
    """

    name: str
    events: pd.DataFrame
    users: FeatureTable
    pins: FeatureTable
    n_interests: int = 0
    source: str = "<memory>"
    truth: GroundTruth | None = None
    duplicate_rows: int = 0

    def engagements(self) -> pd.DataFrame:
        """Events that count as positive labels (click or repin)."""
        return self.events[self.events["event"] >= CLICK]


@dataclass(frozen=True)
class Split:
    """Engagement events cut into time windows (each a DataFrame in the events schema).

    `test` holds labels strictly after every training timestamp; `val` never overlaps `test`.
    `reference_time` is the serving time: the start of the test window (seconds).
    `cold` counts what evaluation could not score (e.g. test items never seen in train).
    `windows` holds each window's time bounds `name -> (start, stop)` in seconds, stop excluded,
    when the split has global windows (the global temporal split; empty for the per-user one).
    """

    pretrain: pd.DataFrame
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    reference_time: int
    cold: dict[str, int] = field(default_factory=dict)
    windows: dict[str, tuple[int, int]] = field(default_factory=dict)

    @functools.cached_property
    def train_engaged(self) -> tuple[np.ndarray, np.ndarray]:
        """(user, pin) arrays of `train`'s engagements (`engaged_pairs`), read-only.

        Computed once per split: the corpus, the evaluation tasks' exclusions, the corpus metrics,
        the served popularity and the baselines' train matrix all read them. A split made from this
        one (`dataclasses.replace`, e.g. with remapped labels) computes its own.

        Raises:
            DataValidationError: when `train` lacks the user/pin/event columns.
        """
        users, pins = engaged_pairs(self.train, "split.train")
        users.flags.writeable = False
        pins.flags.writeable = False
        return users, pins


class GroundTruth(Protocol):
    """The true engagement model of a simulated world (used by simulated online metrics).

    `users` and `pins` broadcast against each other, e.g. users (M, 1) with pins (M, K).
    """

    @property
    def label_noise(self) -> float:
        """Std of the per-impression logit noise with which the world's engagements are drawn."""
        ...

    def engagement_probabilities(
        self, users: np.ndarray, pins: np.ndarray, timestamp: float, noise: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(p_click, p_repin | click) of showing `pins` to `users` at `timestamp` (seconds).

        With `noise` (standard normal draws broadcasting with the pairs) the probabilities of one
        impression whose logit carries `label_noise * noise`, as the world's logs are drawn.
        """
        ...

    def true_score(self, users: np.ndarray, pins: np.ndarray, timestamp: float) -> np.ndarray:
        """The world's engagement logit; what a perfect ranker would sort by."""
        ...

    def near_duplicate_groups(self, pins: np.ndarray) -> np.ndarray:
        """An id per pin shared by near-duplicates (showing two in one session is redundant)."""
        ...


def engaged_pairs(frame: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(user, pin) arrays of the click/repin events of an events frame.

    Args:
        frame: events in the canonical schema.
        name: how to refer to the frame in error messages (e.g. "split.test").
    """
    missing = [c for c in ("user", "pin", "event") if c not in frame.columns]
    if missing:
        raise DataValidationError(f"{name}: missing column(s) {missing}")
    engaged = frame["event"].to_numpy() >= CLICK
    users = frame["user"].to_numpy()[engaged].astype(np.int64, copy=False)
    pins = frame["pin"].to_numpy()[engaged].astype(np.int64, copy=False)
    return users, pins


def validate_events(events: pd.DataFrame, n_users: int, n_pins: int, source: str) -> pd.DataFrame:
    """Check an events frame against the canonical schema.

    Args:
        events: the frame to check.
        n_users: rows in the user table (valid user ids are 0..n_users-1).
        n_pins: rows in the pin table.
        source: the file (or other origin) named in error messages.

    Returns:
        The frame with canonical dtypes (int64 ids and timestamps, int8 event, int32 interest).

    Raises:
        DataValidationError: naming `source`, the column and the first bad row.
    """
    missing = [c for c in EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise DataValidationError(
            f"{source}: missing column(s) {missing}; expected columns {list(EVENT_COLUMNS)}"
        )
    for column, kind in EVENT_COLUMNS.items():
        values = events[column]
        if values.dtype.kind not in (kind, "u"):
            bad = _first_non_integer_row(values)
            raise DataValidationError(
                f"{source}: column '{column}' must hold integers, got dtype {values.dtype}"
                + (f"; first bad row {bad} (value {values.iloc[bad]!r})" if bad is not None else "")
            )
    bounds = {
        "user": (0, n_users - 1),
        "pin": (0, n_pins - 1),
        "event": (IMPRESSION, REPIN),
        "timestamp": (0, np.iinfo(np.int64).max),
        "interest": (NO_INTEREST, np.iinfo(np.int32).max),
    }
    for column, (low, high) in bounds.items():
        values = events[column].to_numpy()
        bad = np.flatnonzero((values < low) | (values > high))
        if len(bad):
            row = int(bad[0])
            raise DataValidationError(
                f"{source}: column '{column}' row {row}: value {values[row]} outside [{low}, {high}]"
                f" ({len(bad)} bad rows in all)"
            )
    return events.astype(
        {"user": "int64", "pin": "int64", "timestamp": "int64", "event": "int8", "interest": "int32"}
    )


def _first_non_integer_row(values: pd.Series) -> int | None:
    numeric = pd.to_numeric(values, errors="coerce")
    bad = np.flatnonzero(numeric.isna().to_numpy() | (numeric.to_numpy() % 1 != 0))
    return int(bad[0]) if len(bad) else None


def apply_duplicate_policy(data: InteractionData, policy: str) -> InteractionData:
    """The data with its exact duplicate event rows handled as `data.duplicates` says.

    A duplicate is a row equal to an earlier one in every column (user, pin, timestamp, event,
    interest): a log written twice, which would count an engagement twice. `error` refuses it
    (naming the count and the first duplicate row), `drop` keeps the first of each and logs the
    count, `keep` keeps every row and logs the count. The count is `duplicate_rows`.

    Args:
        data: the data set as its loader returned it.
        policy: "keep", "drop" or "error".

    Raises:
        ValueError: for an unknown policy (naming `data.duplicates`).
        DataValidationError: with `error` when there are duplicates, naming `data.source`.
    """
    if policy not in DUPLICATE_POLICIES:
        raise ValueError(f"data.duplicates={policy!r} is not one of {list(DUPLICATE_POLICIES)}")
    repeated = data.events.duplicated(keep="first").to_numpy()
    count = int(repeated.sum())
    if count == 0:
        return data
    first = int(np.flatnonzero(repeated)[0])
    row = data.events.iloc[first].to_dict()
    if policy == "error":
        raise DataValidationError(
            f"{data.source}: {count} exact duplicate event rows (the first: row {first}, {row}); "
            "they would count an event twice: set data.duplicates=drop to keep one of each, or "
            "data.duplicates=keep to keep them all"
        )
    log.warning("%s: %d exact duplicate event rows (data.duplicates=%s)", data.source, count, policy)
    events = data.events[~repeated].reset_index(drop=True) if policy == "drop" else data.events
    return dataclasses.replace(data, events=events, duplicate_rows=count)
