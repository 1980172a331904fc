"""A user feature built from the training window: the pins each user engaged with.

Only `split.train` is read, so the bag never holds a validation or test label; during training
each example's own pin is removed from its bag (ebr.data.batching), so the tower cannot learn
to look the label up.

With `features.history_causal=true` a training example (user u, time t) reads instead the bag as it
stood at t (`ExampleHistory`): u's distinct pins engaged strictly before t, ties at t excluded. The
whole-window bag shows a training example the pins its user engages after it, which serving's bag
(all before the serving time) never holds. Serving and the validation loss read the whole-window bag.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ebr.data.csr import offsets_from_lengths, rows_of_values
from ebr.data.schema import CategoricalFeature, InteractionData, Split
from ebr.data.sequences import SEQUENCE_PIN, Bags, EventSequences, ExampleBags, gather_ranges

HISTORY = "history"


def with_history(data: InteractionData, split: Split, max_length: int = 200) -> InteractionData:
    """`data` whose user table gains the categorical feature "history" (distinct train-window pins).

    Args:
        data: the data set.
        split: its split; only `split.train` is used.
        max_length: keep each user's most recent `max_length` distinct pins.
    """
    if max_length <= 0:
        raise ValueError(f"features.history_length must be positive, got {max_length}")
    if HISTORY in data.users.categorical:
        raise ValueError(f"{data.source}: the user table already has a feature named '{HISTORY}'")
    train = split.train.sort_values(["user", "timestamp"], kind="stable")
    # the last engagement with a pin counts; keep the most recent max_length per user
    train = train.drop_duplicates(["user", "pin"], keep="last")
    rank_from_end = train.groupby("user").cumcount(ascending=False).to_numpy()
    train = train[rank_from_end < max_length]
    # rows are sorted by user, so each user's bag is a consecutive run
    lengths = np.bincount(train["user"].to_numpy(np.int64), minlength=data.users.n_rows)
    feature = CategoricalFeature(
        offsets_from_lengths(lengths), train["pin"].to_numpy(np.int64), data.pins.n_rows
    )
    users_table = dataclasses.replace(data.users, categorical={**data.users.categorical, HISTORY: feature})
    return dataclasses.replace(data, users=users_table)


class ExampleHistory:
    """Each training example's history bag at its own time: its user's distinct pins engaged
    strictly before it (ties excluded), the most recent `length`, oldest first.

    A pin engaged more than once counts at its last engagement before the example. A bag is the
    sorted events [a, e) before the example (e: its user's first event at its time) that are their
    pin's last before e; the window start a widens by doubling, for every row of a batch at once,
    until it holds `length` of them or reaches the user's first event.

    Args:
        events: the training window (the frame whose rows the batches index).
        length: the most pins a bag holds (`features.history_length`).
    """

    def __init__(self, events: pd.DataFrame, length: int) -> None:
        if length <= 0:
            raise ValueError(f"features.history_length must be positive, got {length}")
        self.length = int(length)
        self.sorted = EventSequences.of(events)
        users, pins = self.sorted.users, self.sorted.ids[SEQUENCE_PIN]
        n = len(users)
        # each sorted event's next engagement by the same user with the same pin (n: none)
        same = np.lexsort((np.arange(n), pins, users))
        follows = (users[same][1:] == users[same][:-1]) & (pins[same][1:] == pins[same][:-1])
        self.next_same = np.full(n, n, dtype=np.int64)
        self.next_same[same[:-1]] = np.where(follows, same[1:], n)
        position = self.sorted.positions()
        self.user_starts = self.sorted.user_starts()[position]
        self.ends = self.sorted.tie_starts()[position]

    def __call__(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(bag lengths, pin values) of the examples at the frame's `rows`.

        Args:
            rows: row positions in the training frame.
        """
        rows = np.asarray(rows, dtype=np.int64)
        first, ends = self.user_starts[rows], self.ends[rows]
        starts = np.maximum(first, ends - self.length)
        while True:
            lengths, index = gather_ranges(starts, ends)
            row = rows_of_values(lengths)
            latest = self.next_same[index] >= ends[row]
            counts = np.bincount(row[latest], minlength=len(rows))
            short = (counts < self.length) & (starts > first)
            if not short.any():
                break
            starts = np.where(short, np.maximum(first, ends - 2 * (ends - starts)), starts)
        # the window may hold more than `length` distinct pins: keep each row's last `length`
        row, index = row[latest], index[latest]
        from_end = np.repeat(offsets_from_lengths(counts)[1:], counts) - 1 - np.arange(len(row))
        keep = from_end < self.length
        return np.minimum(counts, self.length), self.sorted.ids[SEQUENCE_PIN][index[keep]]


@dataclass(frozen=True)
class HistoryBatches:
    """What a training batch reads with `features.history_causal`: each example's own history bag,
    beside whatever `inner` (the sequence tower's bags and draws) adds.

    Args:
        history: the training window's example bags.
        inner: the other per-example bags (ebr.data.sequences.SequenceBatches), or None.
    """

    history: ExampleHistory
    inner: ExampleBags | None = None

    def __call__(
        self, rows: np.ndarray, rng: np.random.Generator
    ) -> tuple[Bags, tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
        """({feature: (lengths, values)}, dense draws or None) of the examples at the frame's `rows`.

        Args:
            rows: row positions in the training frame.
            rng: the batch's own generator (passed to `inner`).
        """
        bags, draws = ({}, None) if self.inner is None else self.inner(rows, rng)
        return {**bags, HISTORY: self.history(rows)}, draws


def history_batches(
    events: pd.DataFrame, length: int, inner: Callable[[pd.DataFrame], ExampleBags] | None = None
) -> HistoryBatches:
    """The training window's causal history bags, with `inner`'s bags of the same window.

    Args:
        events: the training window.
        length: the most pins a bag holds.
        inner: maps the window to its other per-example bags (the sequence tower's), or None.
    """
    return HistoryBatches(ExampleHistory(events, length), None if inner is None else inner(events))
