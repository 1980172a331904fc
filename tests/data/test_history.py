"""The training-window history feature: no later window leaks in, and a label never sits in its own bag."""

import numpy as np
import pandas as pd
import pytest

from ebr.data.batching import FeatureGatherer, make_batch
from ebr.data.history import with_history
from ebr.data.schema import CLICK, CategoricalFeature, FeatureTable, InteractionData, Split


def _frame(rows: list[tuple[int, int, int]]) -> pd.DataFrame:
    users, pins, times = zip(*rows)
    return pd.DataFrame({"user": users, "pin": pins, "timestamp": times, "event": CLICK, "interest": -1})


@pytest.fixture
def data_and_split():
    n_users, n_pins = 3, 10
    table = lambda n, name: FeatureTable(n, {name: CategoricalFeature.single(np.arange(n), n)})  # noqa: E731
    train = _frame([(0, 1, 10), (0, 2, 11), (0, 1, 12), (1, 3, 5), (0, 4, 13)])
    later = _frame([(0, 7, 100), (2, 8, 101)])  # validation / test pins must never enter the bag
    split = Split(
        pretrain=train.iloc[:0], train=train, val=later.iloc[:1], test=later.iloc[1:], reference_time=100
    )
    data = InteractionData("t", pd.concat([train, later]), table(n_users, "user_id"), table(n_pins, "pin_id"))
    return data, split


def _bags(data: InteractionData) -> list[list[int]]:
    feature = data.users.categorical["history"]
    return [
        feature.values[feature.offsets[u] : feature.offsets[u + 1]].tolist() for u in range(data.users.n_rows)
    ]


def test_history_holds_distinct_train_pins_in_recency_order(data_and_split):
    data, split = data_and_split
    bags = _bags(with_history(data, split))
    # user 0 engaged 1, 2, 1 (again, later), 4: distinct, ordered by last engagement
    assert bags == [[2, 1, 4], [3], []]
    assert data.users.categorical.keys() == {"user_id"}, "the input data is left untouched"


def test_history_keeps_the_most_recent_pins(data_and_split):
    data, split = data_and_split
    assert _bags(with_history(data, split, max_length=2))[0] == [1, 4]
    with pytest.raises(ValueError, match="history_length"):
        with_history(data, split, max_length=0)


def test_training_batches_drop_each_examples_own_pin_from_its_bag(data_and_split):
    data, split = data_and_split
    data = with_history(data, split)
    users = FeatureGatherer(data.users, ["user_id", "history"], [])
    pins = FeatureGatherer(data.pins, ["pin_id"], [])
    batch = make_batch(users, pins, np.array([0, 0, 1]), np.array([1, 9, 3]))
    history = batch.user.sparse.to_dict()["history"]
    assert history.lengths().tolist() == [2, 3, 0]
    assert history.values().tolist() == [2, 4, 2, 1, 4]
    # the weights are recomputed after the drop: each bag still averages
    np.testing.assert_allclose(history.weights().numpy(), [1 / 2] * 2 + [1 / 3] * 3, rtol=1e-6)
    served = users(np.array([0, 1])).sparse.to_dict()["history"]  # serving: the whole bag
    assert served.values().tolist() == [2, 1, 4, 3]
