"""The user's recent engagements as a sequence: the input of `model/user_encoder=sequence`.

Every engagement of a window, sorted by (user, timestamp), carries three ids: its pin, its action
type (the event's `event` value: click, repin) and a time-gap bucket (`gap_buckets`: the log2 of the
seconds since the user's previous engagement in the window, 0 for the first). The gap is the
event's own property, so an event has the same ids in every sequence it enters, and a position's
ids depend on nothing after it.

- A training example (user u, engaged at time t) reads u's last `length` engagements strictly
  before t (`ExampleSequences`): nothing at or after its own time enters, ties included.
- Serving (and the validation loss) reads u's last `length` engagements of the fitted training
  window (`with_sequences`): all before the serving time, which is at or after the window's end.

Sequences travel as three bags of the user tower's KeyedJaggedTensor (`SEQUENCE_FEATURES`, oldest
first), built by numpy gathers over the sorted arrays, never by a loop over users.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ebr.data.csr import offsets_from_lengths
from ebr.data.schema import CLICK, REPIN, CategoricalFeature, InteractionData, Split

# What a training batch reads of each example's own time (the datamodule's `sequences` hook): rows
# and the batch's generator -> ({user feature: (bag lengths, values)}, dense all-action draws or None)
Bags = dict[str, tuple[np.ndarray, np.ndarray]]
ExampleBags = Callable[
    [np.ndarray, np.random.Generator], tuple[Bags, tuple[np.ndarray, np.ndarray, np.ndarray] | None]
]

SEQUENCE_PIN, SEQUENCE_ACTION, SEQUENCE_GAP = "sequence_pin", "sequence_action", "sequence_gap"
SEQUENCE_FEATURES = (SEQUENCE_PIN, SEQUENCE_ACTION, SEQUENCE_GAP)
# action-type ids are the events' `event` values (0 impression, 1 click, 2 repin)
ACTIONS = REPIN + 1
# bucket 0: no earlier engagement; b >= 1: a gap in [2^(b-1), 2^b) seconds (b = 1 also holds 0 s);
# the last bucket holds every gap of 2^30 s (34 years) or more
GAP_BUCKETS = 32


def gap_buckets(gaps: np.ndarray) -> np.ndarray:
    """The log-spaced bucket of each gap in seconds (a negative gap: no earlier engagement, 0).

    Args:
        gaps: int64 seconds since the previous engagement, -1 where there is none.
    """
    gaps = np.asarray(gaps, dtype=np.int64)
    buckets = 1 + np.floor(np.log2(np.maximum(gaps, 1))).astype(np.int64)
    return np.where(gaps < 0, 0, np.minimum(buckets, GAP_BUCKETS - 1))


def gather_ranges(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lengths, indices): the concatenated index ranges [starts[i], ends[i]), vectorised.

    Args:
        starts: first index of each range.
        ends: one past the last index of each range (>= starts).
    """
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(ends, dtype=np.int64) - starts
    offsets = offsets_from_lengths(lengths)
    return lengths, np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1] - starts, lengths)


@dataclass(frozen=True)
class EventSequences:
    """One window's engagements sorted by (user, timestamp), ties in the frame's order.

    Args:
        order: sorted position -> the frame's row.
        users: each sorted event's user.
        timestamps: its time (seconds).
        ids: {feature name in SEQUENCE_FEATURES: each sorted event's id}.
    """

    order: np.ndarray
    users: np.ndarray
    timestamps: np.ndarray
    ids: dict[str, np.ndarray]

    @staticmethod
    def of(events: pd.DataFrame) -> EventSequences:
        """The sorted engagements of a window (rows with `event` below click are refused).

        Args:
            events: the window in the events schema.
        """
        actions = events["event"].to_numpy(np.int64)
        if len(actions) and actions.min() < CLICK:
            raise ValueError("sequences are built from engagements: the window holds impressions")
        users = events["user"].to_numpy(np.int64)
        times = events["timestamp"].to_numpy(np.int64)
        order = np.lexsort((times, users))
        users, times = users[order], times[order]
        first = np.r_[True, users[1:] != users[:-1]] if len(users) else np.zeros(0, bool)
        gaps = np.where(first, -1, times - np.r_[times[:1], times[:-1]])
        ids = {
            SEQUENCE_PIN: events["pin"].to_numpy(np.int64)[order],
            SEQUENCE_ACTION: actions[order],
            SEQUENCE_GAP: gap_buckets(gaps),
        }
        return EventSequences(order, users, times, ids)

    def positions(self) -> np.ndarray:
        """For each row of the frame, its sorted position (the inverse of `order`)."""
        position = np.empty(len(self.order), dtype=np.int64)
        position[self.order] = np.arange(len(self.order))
        return position

    def user_starts(self) -> np.ndarray:
        """For each sorted event, the sorted position of its user's first event."""
        first = np.r_[True, self.users[1:] != self.users[:-1]] if len(self.users) else np.zeros(0, bool)
        return np.maximum.accumulate(np.where(first, np.arange(len(self.users)), 0))

    def tie_starts(self) -> np.ndarray:
        """For each sorted event, the sorted position of its user's first event at its time: an
        example at time t sees the events before it (ties are not "before")."""
        users, times = self.users, self.timestamps
        n = len(users)
        new_time = (
            np.r_[True, (users[1:] != users[:-1]) | (times[1:] != times[:-1])] if n else np.zeros(0, bool)
        )
        return np.maximum.accumulate(np.where(new_time, np.arange(n), 0))

    def bags(self, starts: np.ndarray, ends: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{feature: (lengths, values)}: the sorted events [starts[i], ends[i]) of each row i.

        Args:
            starts: first sorted position of each row's sequence.
            ends: one past its last.
        """
        lengths, index = gather_ranges(starts, ends)
        return {name: (lengths, ids[index]) for name, ids in self.ids.items()}


class ExampleSequences:
    """Each training example's sequence: its user's last `length` engagements strictly before it.

    Args:
        events: the training window (the frame whose rows the batches index).
        length: the most positions a sequence holds (N).
    """

    def __init__(self, events: pd.DataFrame, length: int) -> None:
        if length < 1:
            raise ValueError(f"model.user_encoder.length must be positive, got {length}")
        self.length = int(length)
        self.sorted = EventSequences.of(events)
        ends = self.sorted.tie_starts()
        starts = np.maximum(self.sorted.user_starts(), ends - self.length)
        position = self.sorted.positions()
        self.starts, self.ends = starts[position], ends[position]
        self.times = events["timestamp"].to_numpy(np.int64)
        self.pins = events["pin"].to_numpy(np.int64)

    def __call__(self, rows: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{feature: (lengths, values)} of the examples at the frame's `rows`.

        Args:
            rows: row positions in the training frame.
        """
        rows = np.asarray(rows, dtype=np.int64)
        return self.sorted.bags(self.starts[rows], self.ends[rows])

    def future_targets(
        self, rows: np.ndarray, samples: int, horizon: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The dense all-action objective's draws: (example, position, target pin), `samples` per row.

        Each draw takes a position j of the example's sequence uniformly and a target uniformly
        among the engagements after position j within `horizon` seconds of it: the sequence's
        later positions and the example's own engagement. A draw with none (an empty sequence, or
        nothing within the horizon) takes the example's own engagement.

        Args:
            rows: row positions in the training frame (one batch's examples).
            samples: draws per example.
            horizon: seconds after a position's time within which its targets lie.
            rng: the batch's generator.
        """
        rows = np.asarray(rows, dtype=np.int64)
        starts, size = self.starts[rows], self.ends[rows] - self.starts[rows]
        example = np.repeat(np.arange(len(rows)), samples)
        starts, size = starts[example], size[example]
        position = (rng.random(len(example)) * size).astype(np.int64)
        # each draw's times by offset: the sequence's, then the example's own, then none (never eligible)
        offsets = np.arange(self.length + 1)
        last = len(self.sorted.timestamps) - 1
        sequence_times = self.sorted.timestamps[np.minimum(starts[:, None] + offsets, last)]
        own_time = self.times[rows][example, None]
        never = np.iinfo(np.int64).max - horizon
        times = np.where(
            offsets < size[:, None], sequence_times, np.where(offsets == size[:, None], own_time, never)
        )
        at = times[np.arange(len(example)), np.minimum(position, size)]
        count = ((offsets > position[:, None]) & (times <= at[:, None] + horizon)).sum(axis=1)
        pick = position + 1 + (rng.random(len(example)) * count).astype(np.int64)
        pick = np.where((count > 0) & (size > 0), pick, size)
        sequence_pins = self.sorted.ids[SEQUENCE_PIN][np.minimum(starts + pick, last)]
        target = np.where(pick >= size, self.pins[rows][example], sequence_pins)
        return example, position, target


def with_sequences(data: InteractionData, split: Split, length: int) -> InteractionData:
    """`data` whose user table gains `SEQUENCE_FEATURES`: each user's last `length` engagements of
    the fitted training window, oldest first (what serving and the validation loss read).

    Args:
        data: the data set.
        split: its fitted split; only `split.train` is read.
        length: the most positions a sequence holds.
    """
    taken = sorted(set(SEQUENCE_FEATURES) & set(data.users.categorical))
    if taken:
        raise ValueError(f"{data.source}: the user table already has feature(s) named {taken}")
    events = EventSequences.of(split.train)
    counts = np.bincount(events.users, minlength=data.users.n_rows)
    ends = offsets_from_lengths(counts)[1:]
    starts = np.maximum(ends - counts, ends - length)
    bags = events.bags(starts, ends)
    cardinality = {SEQUENCE_PIN: data.pins.n_rows, SEQUENCE_ACTION: ACTIONS, SEQUENCE_GAP: GAP_BUCKETS}
    features = {
        name: CategoricalFeature(offsets_from_lengths(lengths), values, cardinality[name])
        for name, (lengths, values) in bags.items()
    }
    users = dataclasses.replace(data.users, categorical={**data.users.categorical, **features})
    return dataclasses.replace(data, users=users)


@dataclass(frozen=True)
class SequenceBatches:
    """What the sequence tower adds to a training batch: each example's own sequence bags and,
    with `samples` > 0, the dense all-action objective's draws.

    Args:
        sequences: the training window's example sequences.
        samples: dense all-action draws per example (0: the next-engagement objective only).
        horizon: seconds after a position within which its draws' targets lie.
    """

    sequences: ExampleSequences
    samples: int = 0
    horizon: int = 0

    def __call__(
        self, rows: np.ndarray, rng: np.random.Generator
    ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
        """(sequence bags, dense draws or None) of the examples at the frame's `rows`.

        Args:
            rows: row positions in the training frame.
            rng: the batch's own generator (the draws).
        """
        draws = None
        if self.samples > 0:
            draws = self.sequences.future_targets(rows, self.samples, self.horizon, rng)
        return self.sequences(rows), draws
