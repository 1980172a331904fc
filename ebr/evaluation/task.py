"""What an offline evaluation scores: who is evaluated, what counts as relevant, what is excluded.

`Csr` is the ragged per-user id list used throughout evaluation and serving (relevant pins,
excluded pins); its membership test is vectorised so no caller needs a per-user loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ebr.data.schema import CLICK, DataValidationError, Split

WINDOWS = ("test", "val")


@dataclass(frozen=True)
class Csr:
    """Ragged rows of int64 ids: row i is values[offsets[i]:offsets[i+1]], strictly increasing.

    Args:
        offsets: int64 array of length n_rows + 1, starting at 0, non-decreasing, ending at len(values).
        values: int64 ids, sorted and distinct within each row.
    """

    offsets: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        offsets = np.asarray(self.offsets)
        values = np.asarray(self.values)
        if offsets.ndim != 1 or len(offsets) == 0 or offsets.dtype.kind not in "iu":
            raise ValueError(f"Csr.offsets must be a non-empty 1-D integer array, got shape {offsets.shape}")
        if values.ndim != 1 or (values.size and values.dtype.kind not in "iu"):
            raise ValueError(f"Csr.values must be a 1-D integer array, got {values.dtype} {values.shape}")
        offsets = offsets.astype(np.int64, copy=False)
        values = values.astype(np.int64, copy=False)
        if offsets[0] != 0 or offsets[-1] != len(values) or np.any(np.diff(offsets) < 0):
            raise ValueError(
                f"Csr.offsets must start at 0, be non-decreasing and end at len(values)={len(values)}"
            )
        # a non-increasing step is only allowed where a new row starts
        steps = np.flatnonzero(np.diff(values) <= 0) + 1
        if len(steps) and not np.all(np.isin(steps, offsets)):
            raise ValueError("Csr.values must be strictly increasing within each row (sorted, no duplicates)")
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "values", values)

    @staticmethod
    def from_pairs(rows: np.ndarray, values: np.ndarray, n_rows: int) -> Csr:
        """Build from (row, value) pairs in any order; duplicate pairs are kept once.

        Args:
            rows: row index of each pair, in [0, n_rows).
            values: id of each pair.
            n_rows: number of rows (rows without pairs are empty).
        """
        rows = np.asarray(rows, dtype=np.int64).ravel()
        values = np.asarray(values, dtype=np.int64).ravel()
        if len(rows) != len(values):
            raise ValueError(f"Csr.from_pairs: {len(rows)} rows but {len(values)} values")
        if len(rows) and (rows.min() < 0 or rows.max() >= n_rows):
            raise ValueError(
                f"Csr.from_pairs: row indices must be in [0, {n_rows}), got {rows.min()}..{rows.max()}"
            )
        order = np.lexsort((values, rows))
        rows, values = rows[order], values[order]
        first = np.ones(len(rows), dtype=bool)
        first[1:] = (rows[1:] != rows[:-1]) | (values[1:] != values[:-1])
        rows, values = rows[first], values[first]
        offsets = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n_rows), out=offsets[1:])
        return Csr(offsets, values)

    @property
    def n_rows(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        """Number of ids in each row."""
        return np.diff(self.offsets)

    def row_of_value(self) -> np.ndarray:
        """The row index of each entry of `values`."""
        return np.repeat(np.arange(self.n_rows, dtype=np.int64), self.lengths())

    def slice(self, start: int, stop: int) -> Csr:
        """Rows start..stop-1 as a new Csr.

        Args:
            start: first row.
            stop: one past the last row (clipped to n_rows).
        """
        stop = min(stop, self.n_rows)
        offsets = self.offsets[start : stop + 1]
        return Csr(offsets - offsets[0], self.values[offsets[0] : offsets[-1]])

    def contains_pairs(self, rows: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Whether ids[j] is in row rows[j], for every j (arrays of any matching shape).

        Args:
            rows: row indices in [0, n_rows).
            ids: ids to look up; negative padding ids are never contained.
        """
        rows, ids = np.broadcast_arrays(np.asarray(rows, dtype=np.int64), np.asarray(ids, dtype=np.int64))
        if self.values.size == 0 or ids.size == 0:
            return np.zeros(ids.shape, dtype=bool)
        # dense-rank the ids so (row, rank) packs into one sortable int64 key; rows are already
        # sorted and ids sorted within rows, so the packed keys of `values` are sorted too
        vocabulary = np.unique(self.values)
        if self.n_rows * len(vocabulary) >= 2**62:
            raise ValueError("Csr.contains_pairs: rows x distinct ids too large to pack into int64 keys")
        value_keys = self.row_of_value() * len(vocabulary) + np.searchsorted(vocabulary, self.values)
        rank = np.searchsorted(vocabulary, ids)
        known = vocabulary[np.minimum(rank, len(vocabulary) - 1)] == ids
        keys = rows * len(vocabulary) + rank
        position = np.minimum(np.searchsorted(value_keys, keys), len(value_keys) - 1)
        return known & (value_keys[position] == keys)

    def contains(self, matrix: np.ndarray) -> np.ndarray:
        """Boolean mask: matrix[i, j] is in row i (matrix has one row per Csr row).

        Args:
            matrix: (n_rows, K) ids.
        """
        matrix = np.asarray(matrix)
        if matrix.ndim != 2 or matrix.shape[0] != self.n_rows:
            raise ValueError(f"Csr.contains: expected a ({self.n_rows}, K) matrix, got shape {matrix.shape}")
        return self.contains_pairs(np.arange(self.n_rows)[:, None], matrix)


def first_kept(keep: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices of the first k True entries of each row, in their original order.

    Args:
        keep: (M, C) boolean mask.
        k: number of columns wanted.

    Returns:
        (columns (M, k) int64, valid (M, k) bool); `valid` is False where a row had fewer than k
        kept entries (the column index there is meaningless and must be masked by the caller).
    """
    keep = np.asarray(keep, dtype=bool)
    # a stable sort of ~keep moves kept columns first without reordering them
    columns = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    valid = np.take_along_axis(keep, columns, axis=1)
    if columns.shape[1] < k:
        pad = k - columns.shape[1]
        columns = np.pad(columns, ((0, 0), (0, pad)))
        valid = np.pad(valid, ((0, 0), (0, pad)))
    return columns.astype(np.int64, copy=False), valid


@dataclass(frozen=True)
class EvalTask:
    """One offline evaluation: users, their relevant pins, what each user must not be shown.

    Args:
        user_ids: sorted ids of the evaluated users.
        relevant: per evaluated user, the distinct window-engaged pins that can be retrieved.
        exclude: per evaluated user, their train-window engaged corpus pins (None: no exclusion).
        corpus: sorted pin ids that may be retrieved.
        timestamp: serving time in seconds.
        cold: counts of what could not be evaluated (see `build_eval_task`).
    """

    user_ids: np.ndarray
    relevant: Csr
    exclude: Csr | None
    corpus: np.ndarray
    timestamp: int
    cold: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.relevant.n_rows != len(self.user_ids):
            raise ValueError(
                f"EvalTask.relevant has {self.relevant.n_rows} rows for {len(self.user_ids)} users"
            )
        if self.exclude is not None and self.exclude.n_rows != len(self.user_ids):
            raise ValueError(
                f"EvalTask.exclude has {self.exclude.n_rows} rows for {len(self.user_ids)} users"
            )


def check_corpus(corpus: np.ndarray) -> np.ndarray:
    """Validate a corpus: a non-empty 1-D array of sorted, distinct, non-negative integer pin ids.

    Args:
        corpus: candidate pin ids.
    """
    corpus = np.asarray(corpus)
    if corpus.ndim != 1 or corpus.size == 0 or corpus.dtype.kind not in "iu":
        raise ValueError(f"corpus must be a non-empty 1-D integer array, got {corpus.dtype} {corpus.shape}")
    if corpus[0] < 0 or np.any(np.diff(corpus) <= 0):
        raise ValueError("corpus must hold sorted, distinct, non-negative pin ids")
    return corpus.astype(np.int64, copy=False)


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


def build_eval_task(
    split: Split, corpus: np.ndarray, window: str = "test", exclude_train: bool = True
) -> EvalTask:
    """Who is evaluated on which pins, from the engagements of a later window.

    A user is evaluated when at least one window engagement is on a retrievable pin: in the corpus
    and, with `exclude_train`, not already engaged in the train window (such a pin is filtered
    out of that user's retrieval, so counting it as relevant would only cap recall below 1).

    Args:
        split: the time split.
        corpus: sorted pin ids that may be retrieved.
        window: "test" (served at split.reference_time) or "val" (served at the first val
            timestamp; split.test is never read).
        exclude_train: exclude each user's train-window engaged pins from retrieval.

    Returns:
        The task; `cold` counts "window_users" (users with window engagements), "cold_users"
        (none of them on a corpus pin), "cold_items" (distinct window user-pin pairs off the
        corpus), "repeat_items" (distinct pairs already engaged in train, with exclude_train) and
        "repeat_only_users" (users whose corpus engagements are all repeats).
    """
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {WINDOWS}, got {window!r}")
    corpus = check_corpus(corpus)
    frame = split.test if window == "test" else split.val
    name = f"split.{window}"
    users, pins = engaged_pairs(frame, name)
    if len(users) == 0:
        raise DataValidationError(f"{name}: no click/repin events to evaluate on")
    if window == "test":
        timestamp = int(split.reference_time)
    else:
        if "timestamp" not in frame.columns:
            raise DataValidationError(f"{name}: missing column 'timestamp'")
        timestamp = int(frame["timestamp"].min())

    window_users = np.unique(users)
    pair_user, pair_pin = _unique_pairs(users, pins)
    in_corpus = np.isin(pair_pin, corpus)
    corpus_users = np.unique(pair_user[in_corpus])
    pair_user, pair_pin = pair_user[in_corpus], pair_pin[in_corpus]

    history: Csr | None = None
    repeat = np.zeros(len(pair_user), dtype=bool)
    if exclude_train:
        train_users, train_pins = engaged_pairs(split.train, "split.train")
        history = _rows_for(corpus_users, train_users, train_pins, corpus)
        repeat = history.contains_pairs(np.searchsorted(corpus_users, pair_user), pair_pin)

    user_ids = np.unique(pair_user[~repeat])
    rows = np.searchsorted(user_ids, pair_user[~repeat])
    relevant = Csr.from_pairs(rows, pair_pin[~repeat], len(user_ids))
    exclude = None
    if history is not None:
        exclude = _rows_for(user_ids, train_users, train_pins, corpus)
    cold = {
        "window_users": len(window_users),
        "cold_users": len(window_users) - len(corpus_users),
        "cold_items": int((~in_corpus).sum()),
        "repeat_items": int(repeat.sum()),
        "repeat_only_users": len(corpus_users) - len(user_ids),
    }
    return EvalTask(user_ids, relevant, exclude, corpus, timestamp, cold)


def _unique_pairs(users: np.ndarray, pins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((pins, users))
    users, pins = users[order], pins[order]
    first = np.ones(len(users), dtype=bool)
    first[1:] = (users[1:] != users[:-1]) | (pins[1:] != pins[:-1])
    return users[first], pins[first]


def _rows_for(user_ids: np.ndarray, users: np.ndarray, pins: np.ndarray, corpus: np.ndarray) -> Csr:
    """Per user of the sorted `user_ids`, their pins (from the pairs) that are in the corpus."""
    row = np.minimum(np.searchsorted(user_ids, users), max(len(user_ids) - 1, 0))
    keep = np.isin(pins, corpus)
    if len(user_ids):
        keep &= user_ids[row] == users
    else:
        keep[:] = False
    return Csr.from_pairs(row[keep], pins[keep], len(user_ids))
