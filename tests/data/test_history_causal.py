"""`features.history_causal`: a training example's history bag holds only its user's pins engaged
strictly before it (ties excluded), distinct, the most recent `history_length`, never its own pin;
off, the bags are the whole-window bag less the example's pin, as before."""

import numpy as np
import pandas as pd
import pytest

from ebr.data.batching import FeatureGatherer, make_batch
from ebr.data.datamodule import Batching, TwoTowerDataModule
from ebr.data.history import HISTORY, ExampleHistory, HistoryBatches, history_batches, with_history
from ebr.data.schema import CLICK, CategoricalFeature, FeatureTable, InteractionData, Split
from ebr.data.sequences import SEQUENCE_FEATURES, ExampleSequences, SequenceBatches
from ebr.models.assembly import Towers
from ebr.models.user_encoder import with_causal_history

# (user, pin, time) in frame order: ties at 10 and 30 (user 0) and at 7 (user 1), repeats of pins 1, 2, 6
LOG = [
    (0, 1, 10),
    (1, 6, 5),
    (0, 2, 10),
    (0, 3, 20),
    (1, 6, 7),
    (0, 1, 30),
    (1, 7, 7),
    (0, 4, 30),
    (2, 8, 1),
    (0, 2, 40),
    (1, 6, 8),
    (1, 6, 9),
    (0, 5, 50),
    (1, 6, 10),
    (1, 9, 11),
]
# each row's bag by hand (oldest last engagement first), its own pin dropped; no cap
EXPECTED = [
    [],  # u0 t=10: nothing before; the tie (2, 10) is not before
    [],  # u1 t=5
    [],  # u0 t=10
    [1, 2],  # u0 t=20
    [],  # u1 t=7: [6] less its own pin 6
    [2, 3],  # u0 t=30: [1, 2, 3] less 1; the tie (4, 30) is not before
    [6],  # u1 t=7: the tie (6, 7) is not before
    [1, 2, 3],  # u0 t=30
    [],  # u2 t=1
    [3, 1, 4],  # u0 t=40: 2@10, 3@20, 1@30, 4@30 less 2
    [7],  # u1 t=8: 6@7 (latest), 7@7, in frame order, less 6
    [7],  # u1 t=9
    [3, 1, 4, 2],  # u0 t=50
    [7],  # u1 t=10
    [7, 6],  # u1 t=11: 7@7, 6@10
]
# with history_length=2: each bag's two most recent pins before the drop
EXPECTED_2 = [[], [], [], [1, 2], [], [2, 3], [6], [2, 3], [], [1, 4], [7], [7], [4, 2], [7], [7, 6]]


def _frame(rows: list[tuple[int, int, int]]) -> pd.DataFrame:
    users, pins, times = zip(*rows)
    return pd.DataFrame({"user": users, "pin": pins, "timestamp": times, "event": CLICK, "interest": -1})


def _data_and_split(
    rows: list[tuple[int, int, int]], n_users: int, n_pins: int
) -> tuple[InteractionData, Split]:
    train = _frame(rows)
    split = Split(
        pretrain=train.iloc[:0], train=train, val=train.iloc[:0], test=train.iloc[:0], reference_time=10**6
    )
    table = lambda n, name: FeatureTable(n, {name: CategoricalFeature.single(np.arange(n), n)})  # noqa: E731
    return InteractionData("t", train, table(n_users, "user_id"), table(n_pins, "pin_id")), split


def _history_of_batch(data: InteractionData, split: Split, bags: HistoryBatches | None) -> list[list[int]]:
    """Each training row's history bag as the user tower's sparse input holds it."""
    data = with_history(data, split)
    users = FeatureGatherer(data.users, ["user_id", HISTORY], [])
    pins = FeatureGatherer(data.pins, ["pin_id"], [])
    rows = np.arange(len(split.train))
    overrides = None if bags is None else bags(rows, np.random.default_rng(0))[0]
    train = split.train
    batch = make_batch(
        users, pins, train["user"].to_numpy().copy(), train["pin"].to_numpy().copy(), sequences=overrides
    )
    history = batch.user.sparse.to_dict()[HISTORY]
    values, lengths = history.values().tolist(), history.lengths().tolist()
    ends = np.cumsum(lengths).tolist()
    return [values[end - n : end] for end, n in zip(ends, lengths)]


@pytest.mark.parametrize(("length", "expected"), [(200, EXPECTED), (2, EXPECTED_2)])
def test_each_example_reads_its_distinct_pins_strictly_before_it(length, expected):
    data, split = _data_and_split(LOG, 3, 10)
    assert _history_of_batch(data, split, history_batches(split.train, length)) == expected


def test_a_shuffled_batch_reads_its_rows_bags():
    history = ExampleHistory(_frame(LOG), 2)
    rows = np.array([14, 3, 12, 0, 9])
    lengths, values = history(rows)
    # before the own pin is dropped: u1 t=11 [7, 6], u0 t=20 [1, 2], u0 t=50 [4, 2], u0 t=10 [],
    # u0 t=40 [1, 4]
    assert lengths.tolist() == [2, 2, 2, 0, 2]
    assert values.tolist() == [7, 6, 1, 2, 4, 2, 1, 4]


def test_the_bags_match_a_brute_force_on_a_random_log():
    rng = np.random.default_rng(7)
    n = 300
    log = list(
        zip(rng.integers(0, 4, n).tolist(), rng.integers(0, 12, n).tolist(), rng.integers(0, 60, n).tolist())
    )
    length = 3
    lengths, values = ExampleHistory(_frame(log), length)(np.arange(n))
    got = np.split(values, np.cumsum(lengths)[:-1])
    for row, (user, _, time) in enumerate(log):
        before = sorted(
            (t, i, p) for i, (u, p, t) in enumerate(log) if u == user and t < time
        )  # time, then frame order: the sort the bags use
        last = {p: (t, i) for t, i, p in before}  # a pin's latest engagement before the example
        bag = [p for p, _ in sorted(last.items(), key=lambda item: item[1])][-length:]
        assert got[row].tolist() == bag, row


def test_the_sequence_bags_travel_beside_the_causal_history():
    events = _frame(LOG)
    sequences = ExampleSequences(events, 4)
    bags = HistoryBatches(ExampleHistory(events, 200), SequenceBatches(sequences))
    rows = np.array([5, 14, 0])
    together, draws = bags(rows, np.random.default_rng(0))
    assert draws is None
    assert set(together) == {HISTORY, *SEQUENCE_FEATURES}
    alone = sequences(rows)
    for name in SEQUENCE_FEATURES:
        for got, want in zip(together[name], alone[name]):
            np.testing.assert_array_equal(got, want)
    assert together[HISTORY][0].tolist() == [3, 2, 0]


def _towers(user_sparse: list[str]) -> Towers:
    features = {"user_sparse": user_sparse, "user_dense": [], "pin_sparse": ["pin_id"], "pin_dense": []}
    return Towers(network={}, features=features, user_spec=None, pin_spec=None)  # type: ignore[arg-type]


def test_off_the_towers_and_the_training_bags_are_todays():
    data, split = _data_and_split(LOG, 3, 10)
    towers = _towers(["user_id", HISTORY])
    assert with_causal_history(towers, {"history_causal": False, "history_length": 200}) is towers
    assert (
        with_causal_history(
            _towers(["user_id"]), {"history_causal": True, "history_length": 200}
        ).sequences_of
        is None
    )
    # today's bags: the whole-window bag (with_history) less each example's own pin
    whole = {0: [3, 1, 4, 2, 5], 1: [7, 6, 9], 2: [8]}
    today = [[p for p in whole[u] if p != pin] for u, pin, _ in LOG]
    assert _history_of_batch(data, split, None) == today
    # through the data module, as training builds its batches: on, the causal bags; off, today's
    causal = with_causal_history(towers, {"history_causal": True, "history_length": 200})
    assert causal.manifest == {"history_bag": "causal"}
    for sequences_of, expected in ((None, today), (causal.sequences_of, EXPECTED)):
        module = TwoTowerDataModule(
            with_history(data, split),
            split,
            towers.features,
            Batching(batch_size=len(LOG), seed=3),
            sequences_of=sequences_of,
        )
        (batch,) = list(module.train_dataloader())
        history = batch.user.sparse.to_dict()[HISTORY]
        order = batch.user.ids.numpy()
        pins = batch.pin.ids.numpy()
        ends = np.cumsum(history.lengths().numpy())
        bags = np.split(history.values().numpy(), ends[:-1])
        # the batch is shuffled: match its rows back to the frame's by (user, pin) and bag
        got = sorted((int(u), int(p), b.tolist()) for u, p, b in zip(order, pins, bags))
        want = sorted((u, p, bag) for (u, p, _), bag in zip(LOG, expected))
        assert got == want
