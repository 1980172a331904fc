"""What an offline evaluation scores: who is evaluated, what counts as relevant, what is excluded.

Per-user id lists are `ebr.data.csr.Csr` (re-exported here for callers of this module).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from ebr.data.csr import Csr
from ebr.data.schema import DataValidationError, Split, engaged_pairs
from ebr.evaluation.hashing import hash_mix

__all__ = [
    "HIT_LEVELS",
    "WINDOWS",
    "Csr",
    "EvalTask",
    "as_labels",
    "build_eval_task",
    "build_simulation_task",
    "by_label",
    "check_corpus",
    "served_from",
]

WINDOWS = ("test", "val")
# eval.hit_level: a hit on the pin itself, or on any pin of the same coarse image signature
HIT_LEVELS = ("pin", "signature")
# the hash stream of the simulated population's sample
_POPULATION_STREAM = 7


@dataclass(frozen=True)
class EvalTask:
    """One offline evaluation: users, their relevant pins, what each user must not be shown.

    Args:
        user_ids: sorted ids of the evaluated users.
        relevant: per evaluated user, the distinct window-engaged pins that can be retrieved (never
            empty in `build_eval_task`'s tasks; may be empty in `build_simulation_task`'s).
        exclude: per evaluated user, their train-window engaged corpus pins (None: no exclusion).
        corpus: sorted pin ids that may be retrieved.
        timestamp: serving time in seconds.
        cold: counts of what could not be evaluated (see `build_eval_task`).
        label_of: (n_pins,) pin -> the id a hit is counted by (its coarse signature under
            `eval.hit_level=signature`): `relevant` then holds those ids and a ranking is scored
            through `as_labels`; None: hits count per pin.
    """

    user_ids: np.ndarray
    relevant: Csr
    exclude: Csr | None
    corpus: np.ndarray
    timestamp: int
    cold: dict[str, int] = field(default_factory=dict)
    label_of: np.ndarray | None = None

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
    split: Split,
    corpus: np.ndarray,
    window: str = "test",
    exclude_train: bool = True,
    label_of: np.ndarray | None = None,
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
        label_of: (n_pins,) pin -> label id (e.g. its coarse signature): relevance, repeats and
            exclusions are then per label (a corpus pin is excluded when the user engaged a pin of
            its label in train, and a window pair is relevant when its label has a corpus pin);
            None: per pin.

    Returns:
        The task; `cold` counts "window_users" (users with window engagements), "cold_users"
        (none of them on a corpus pin), "cold_items" (distinct window user-pin pairs off the
        corpus), "repeat_items" (distinct pairs already engaged in train, with exclude_train) and
        "repeat_only_users" (users whose corpus engagements are all repeats).
    """
    users, pins, timestamp = _window(split, window)
    corpus = check_corpus(corpus)
    items, pins = _labelled(corpus, pins, label_of)
    window_users = np.unique(users)
    pair_user, pair_pin = _unique_pairs(users, pins)
    in_corpus = np.isin(pair_pin, items)
    corpus_users = np.unique(pair_user[in_corpus])
    pair_user, pair_pin = pair_user[in_corpus], pair_pin[in_corpus]

    history: Csr | None = None
    repeat = np.zeros(len(pair_user), dtype=bool)
    if exclude_train:
        train_users, train_pins = split.train_engaged
        train_pins = train_pins if label_of is None else label_of[train_pins]
        history = _rows_for(corpus_users, train_users, train_pins, items)
        repeat = history.contains_pairs(np.searchsorted(corpus_users, pair_user), pair_pin)

    user_ids = np.unique(pair_user[~repeat])
    rows = np.searchsorted(user_ids, pair_user[~repeat])
    relevant = Csr.from_pairs(rows, pair_pin[~repeat], len(user_ids))
    exclude = None
    if history is not None:
        exclude = _members(_rows_for(user_ids, train_users, train_pins, items), corpus, label_of)
    cold = {
        "window_users": len(window_users),
        "cold_users": len(window_users) - len(corpus_users),
        "cold_items": int((~in_corpus).sum()),
        "repeat_items": int(repeat.sum()),
        "repeat_only_users": len(corpus_users) - len(user_ids),
    }
    return EvalTask(user_ids, relevant, exclude, corpus, timestamp, cold, label_of)


def build_simulation_task(
    split: Split,
    corpus: np.ndarray,
    users: int,
    seed: int = 0,
    window: str = "test",
    exclude_train: bool = True,
    label_of: np.ndarray | None = None,
) -> EvalTask:
    """The simulated online population: a fixed seeded sample of the window's active users.

    Unlike `build_eval_task`, who is simulated does not depend on the corpus or on `exclude_train`,
    so every arm of a comparison is simulated on the same users; a user with nothing retrievable
    is simulated with whatever the arm retrieves. The sample keeps the users of smallest hash of
    (seed, user id), so it is the same for any retriever, and a smaller sample is a subset of a
    larger one.

    Args:
        split: the time split.
        corpus: sorted pin ids that may be retrieved.
        users: at most this many users are sampled (all of them when the window has fewer).
        seed: the sample's seed.
        window: "test" or "val", as in `build_eval_task`.
        exclude_train: exclude each user's train-window engaged corpus pins from retrieval.
        label_of: as in `build_eval_task` (exclusions and relevance per label).

    Returns:
        The task; `relevant` holds each user's retrievable window engagements (possibly none) and
        `cold` counts "window_users" (users with window engagements), "sampled_users" and
        "nothing_relevant" (sampled users with no retrievable window engagement).
    """
    if isinstance(users, bool) or not isinstance(users, int | np.integer) or users < 1:
        raise ValueError(f"users must be a positive integer, got {users!r}")
    window_user, window_pin, timestamp = _window(split, window)
    corpus = check_corpus(corpus)
    items, window_pin = _labelled(corpus, window_pin, label_of)
    active = np.unique(window_user)
    if len(active) > users:
        keys = hash_mix(hash_mix(np.uint64(seed), _POPULATION_STREAM), active.astype(np.uint64))
        active = np.sort(active[np.argsort(keys, kind="stable")[:users]])
    exclude = None
    if exclude_train:
        train_users, train_pins = split.train_engaged
        train_pins = train_pins if label_of is None else label_of[train_pins]
        exclude = _rows_for(active, train_users, train_pins, items)
    relevant = _rows_for(active, *_unique_pairs(window_user, window_pin), items)
    if exclude is not None:
        keep = ~exclude.contains_pairs(relevant.row_of_value(), relevant.values)
        relevant = Csr.from_pairs(relevant.row_of_value()[keep], relevant.values[keep], len(active))
        exclude = _members(exclude, corpus, label_of)
    cold = {
        "window_users": len(np.unique(window_user)),
        "sampled_users": len(active),
        "nothing_relevant": int(np.sum(relevant.lengths() == 0)),
    }
    return EvalTask(active, relevant, exclude, corpus, timestamp, cold, label_of)


def served_from(task: EvalTask, corpus: np.ndarray) -> EvalTask:
    """The task with retrieval from `corpus` (a subset of the task's): users and relevance stay.

    So every corpus policy is scored on the same labels (those of the task's own, wider corpus)
    and a smaller corpus can only lose hits. Exclusions are restricted to the new corpus.

    Args:
        task: the task, built over the label corpus.
        corpus: sorted pin ids retrieval may return.
    """
    corpus = check_corpus(corpus)
    exclude = task.exclude
    if exclude is not None:
        keep = np.isin(exclude.values, corpus)
        exclude = Csr.from_pairs(exclude.row_of_value()[keep], exclude.values[keep], exclude.n_rows)
    return dataclasses.replace(task, corpus=corpus, exclude=exclude)


def as_labels(retrieved: np.ndarray, label_of: np.ndarray) -> np.ndarray:
    """Retrieved pins as their labels, each label once per row (at its first place), -1 padded.

    Args:
        retrieved: (M, C) ranked pin ids, -1 padded.
        label_of: (n_pins,) pin -> label id.
    """
    retrieved = np.asarray(retrieved, dtype=np.int64)
    mapped = np.where(retrieved >= 0, label_of[np.maximum(retrieved, 0)], -1)
    order = np.argsort(mapped, axis=1, kind="stable")
    ranked = np.take_along_axis(mapped, order, 1)
    repeated_sorted = np.zeros(mapped.shape, dtype=bool)
    repeated_sorted[:, 1:] = ranked[:, 1:] == ranked[:, :-1]
    repeated = np.empty_like(repeated_sorted)
    np.put_along_axis(repeated, order, repeated_sorted, 1)
    keep = (mapped >= 0) & ~repeated
    # kept labels move left in rank order; stable, so the first place of each label wins
    compact = np.argsort(~keep, axis=1, kind="stable")
    return np.take_along_axis(np.where(keep, mapped, -1), compact, 1)


def by_label(relevant: Csr, label_of: np.ndarray) -> Csr:
    """Per-user relevant pins as their labels (a label once per row).

    Args:
        relevant: per user, pin ids.
        label_of: (n_pins,) pin -> label id.
    """
    return Csr.from_pairs(relevant.row_of_value(), np.asarray(label_of)[relevant.values], relevant.n_rows)


def _labelled(
    corpus: np.ndarray, pins: np.ndarray, label_of: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """(the corpus's sorted distinct items, the window pins as items): pins, or their labels."""
    if label_of is None:
        return corpus, pins
    label_of = np.asarray(label_of, dtype=np.int64)
    return np.unique(label_of[corpus]), label_of[pins]


def _members(rows: Csr, corpus: np.ndarray, label_of: np.ndarray | None) -> Csr:
    """Per row, the corpus pins whose label is one of the row's labels (the row itself per pin)."""
    if label_of is None:
        return rows
    labels = label_of[corpus]
    order = np.argsort(labels, kind="stable")
    by_label, pins = labels[order], corpus[order]
    start = np.searchsorted(by_label, rows.values, side="left")
    count = np.searchsorted(by_label, rows.values, side="right") - start
    row = np.repeat(rows.row_of_value(), count)
    offsets = np.repeat(start - (np.cumsum(count) - count), count) + np.arange(int(count.sum()))
    return Csr.from_pairs(row, pins[offsets], rows.n_rows)


def _window(split: Split, window: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(users, pins) of the window's engagements and the window's serving time."""
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {WINDOWS}, got {window!r}")
    frame = split.test if window == "test" else split.val
    name = f"split.{window}"
    users, pins = engaged_pairs(frame, name)
    if len(users) == 0:
        raise DataValidationError(f"{name}: no click/repin events to evaluate on")
    if window == "test":
        return users, pins, int(split.reference_time)
    if "timestamp" not in frame.columns:
        raise DataValidationError(f"{name}: missing column 'timestamp'")
    return users, pins, int(frame["timestamp"].min())


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
