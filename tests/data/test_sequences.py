"""The sequence tower's input (ebr.data.sequences): nothing at or after an example's time enters its
sequence, the serving sequences hold the training window only, and the dense draws' targets lie
after their position within the horizon; each checked against a loop over a hand-built log."""

import numpy as np
import pandas as pd
import pytest

from ebr.data.batching import FeatureGatherer
from ebr.data.datamodule import EngagementBatches
from ebr.data.schema import CLICK, REPIN, CategoricalFeature, FeatureTable, InteractionData, Split
from ebr.data.sequences import (
    SEQUENCE_ACTION,
    SEQUENCE_FEATURES,
    SEQUENCE_GAP,
    SEQUENCE_PIN,
    ExampleSequences,
    SequenceBatches,
    gap_buckets,
    with_sequences,
)

# (user, pin, timestamp, event), deliberately out of order, with ties at the same second
LOG = [
    (0, 5, 100, CLICK),
    (1, 2, 50, REPIN),
    (0, 6, 110, REPIN),
    (0, 7, 110, CLICK),  # a tie with the row above: neither is "before" the other
    (0, 8, 300, CLICK),
    (1, 3, 60, CLICK),
    (0, 9, 90, CLICK),
    (2, 4, 10, CLICK),
    (0, 1, 5000, REPIN),
]


def _frame(rows) -> pd.DataFrame:
    users, pins, times, events = zip(*rows)
    return pd.DataFrame({"user": users, "pin": pins, "timestamp": times, "event": events, "interest": -1})


def _hand_sequence(row: int, length: int) -> list[tuple[int, int, int]]:
    """The (pin, action, gap bucket) sequence of LOG[row], by a loop: the user's events strictly
    before its time, oldest first, the last `length`; a gap is the time since the user's previous
    event (ties in log order)."""
    user, _, time, _ = LOG[row]
    mine = sorted((t, i) for i, (u, _, t, _) in enumerate(LOG) if u == user)
    gaps = {}
    for k, (t, i) in enumerate(mine):
        gaps[i] = 0 if k == 0 else int(gap_buckets(np.array([t - mine[k - 1][0]]))[0])
    before = [(LOG[i][1], LOG[i][3], gaps[i]) for t, i in mine if t < time]
    return before[-length:]


def _rows(bags, names=SEQUENCE_FEATURES) -> list[list[tuple[int, ...]]]:
    lengths = bags[SEQUENCE_PIN][0]
    offsets = np.r_[0, np.cumsum(lengths)]
    columns = [bags[name][1] for name in names]
    return [
        list(zip(*(c[offsets[i] : offsets[i + 1]].tolist() for c in columns))) for i in range(len(lengths))
    ]


def test_gap_buckets_are_log2_spaced() -> None:
    gaps = np.array([-1, 0, 1, 2, 3, 4, 7, 8, 86_400, 2**40])
    # 0: no earlier event; b: [2^(b-1), 2^b) seconds; 86400 s lies in [2^16, 2^17); the last bucket caps
    assert gap_buckets(gaps).tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 17, 31]


@pytest.mark.parametrize("length", [1, 2, 50])
def test_an_example_sees_only_its_users_events_strictly_before_it(length) -> None:
    frame = _frame(LOG)
    sequences = ExampleSequences(frame, length)
    rows = np.arange(len(LOG))
    got = _rows(sequences(rows))
    assert got == [_hand_sequence(row, length) for row in rows]
    # the tie at t=110: neither event sees the other; the event at 300 sees both
    assert [pin for pin, *_ in got[2]] == [pin for pin, *_ in got[3]] == [9, 5][-length:]
    assert [pin for pin, *_ in got[4]] == [9, 5, 6, 7][-length:]
    times = dict(zip(zip(frame.user, frame.pin), frame.timestamp))
    for row, sequence in zip(rows, got):
        user, _, time, _ = LOG[row]
        assert all(times[(user, pin)] < time for pin, *_ in sequence)


def test_serving_sequences_hold_the_training_window_only() -> None:
    train, later = _frame(LOG[:-1]), _frame([(0, 11, 6000, CLICK), (2, 12, 6001, CLICK)])
    split = Split(
        pretrain=train.iloc[:0], train=train, val=later.iloc[:1], test=later.iloc[1:], reference_time=6000
    )
    table = lambda n: FeatureTable(n, {"id": CategoricalFeature.single(np.arange(n), n)})  # noqa: E731
    data = InteractionData("t", pd.concat([train, later]), table(3), table(13))
    prepared = with_sequences(data, split, length=3)
    feature = prepared.users.categorical[SEQUENCE_PIN]
    bags = [feature.values[feature.offsets[u] : feature.offsets[u + 1]].tolist() for u in range(3)]
    # user 0's last three training engagements in time order (the tie in log order); never 11 or 12
    assert bags == [[6, 7, 8], [2, 3], [4]]
    actions = prepared.users.categorical[SEQUENCE_ACTION].values.tolist()
    assert actions == [REPIN, CLICK, CLICK, REPIN, CLICK, CLICK]
    gaps = prepared.users.categorical[SEQUENCE_GAP].values.tolist()
    # 6 and 7 come 10 s after pin 5 (bucket 4) and 0 s after each other; 8 comes 190 s later
    assert gaps == [4, 1, 8, 0, 4, 0]
    with pytest.raises(ValueError, match="already has"):
        with_sequences(prepared, split, 3)


def test_impressions_are_refused() -> None:
    with pytest.raises(ValueError, match="impressions"):
        ExampleSequences(_frame([(0, 1, 1, 0)]), 4)


def test_dense_draws_predict_an_engagement_after_their_position_within_the_horizon() -> None:
    frame = _frame(LOG)
    sequences = ExampleSequences(frame, 50)
    rows = np.arange(len(LOG))
    horizon = 100
    examples, positions, targets = sequences.future_targets(rows, 64, horizon, np.random.default_rng(0))
    assert len(examples) == 64 * len(rows)
    bags = _rows(sequences(rows), [SEQUENCE_PIN])
    seen = set()
    for example, position, target in zip(examples, positions, targets):
        user, own_pin, own_time, _ = LOG[example]
        history = [pin for (pin,) in bags[example]]
        times = [next(t for u, p, t, _ in LOG if u == user and p == pin) for pin in history]
        if not history:
            assert (position, target) == (0, own_pin)
            continue
        assert 0 <= position < len(history)
        # the hand set: later positions and the example itself, within the horizon of the position
        future = [*list(zip(history, times))[position + 1 :], (own_pin, own_time)]
        eligible = {p for p, t in future if t <= times[position] + horizon}
        assert target in (eligible or {own_pin})
        seen.add((int(example), int(position), int(target)))
    # user 0's example at t=300 (row 4): from pin 9 (t=90) the horizon reaches pins 5, 6, 7, not 8
    assert {target for example, position, target in seen if example == 4 and position == 0} == {5, 6, 7}
    # from pin 7 (t=110) nothing lies within the horizon: the draw falls back on its own engagement
    assert (4, 3, 8) in seen


def test_training_batches_carry_each_examples_own_sequence() -> None:
    frame = _frame(LOG)
    users = FeatureTable(3, {"user_id": CategoricalFeature.single(np.arange(3), 3)})
    pins = FeatureTable(13, {"pin_id": CategoricalFeature.single(np.arange(13), 13)})
    # the table's (serving) sequences are placeholders a training batch must not read
    table = FeatureTable(
        3,
        {
            **users.categorical,
            **{name: CategoricalFeature.single(np.zeros(3, np.int64), 13) for name in SEQUENCE_FEATURES},
        },
    )
    gatherer = FeatureGatherer(table, ["user_id", *SEQUENCE_FEATURES], [])
    sequences = SequenceBatches(ExampleSequences(frame, 2))
    batches = EngagementBatches(
        frame, gatherer, FeatureGatherer(pins, ["pin_id"], []), 3, True, 0, sequences=sequences
    )
    seen = 0
    for batch in batches:
        rows = [
            LOG.index(next(r for r in LOG if r[0] == u and r[1] == p))
            for u, p in zip(batch.user.ids.tolist(), batch.pin.ids.tolist())
        ]
        bag = batch.user.sparse[SEQUENCE_PIN]
        got = [
            bag.values()[s:e].tolist()
            for s, e in zip(bag.offsets()[:-1].tolist(), bag.offsets()[1:].tolist())
        ]
        assert got == [[pin for pin, *_ in _hand_sequence(row, 2)] for row in rows]
        assert batch.positions is None
        seen += len(rows)
    assert seen == len(LOG)
