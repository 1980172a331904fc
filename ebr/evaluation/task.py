"""What an offline evaluation scores: who is evaluated, what counts as relevant, what is excluded.

Per-user id lists are `ebr.data.csr.Csr` (re-exported here for callers of this module).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ebr.data.csr import Csr
from ebr.data.schema import DataValidationError, Split, engaged_pairs

__all__ = ["WINDOWS", "Csr", "EvalTask", "build_eval_task", "check_corpus"]

WINDOWS = ("test", "val")


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
