"""Batch construction against a per-example reference."""

import functools
import operator

import numpy as np
import pandas as pd
import pytest

from ebr.data.batching import FeatureGatherer, make_batch
from ebr.data.datamodule import EngagementBatches
from ebr.data.schema import CategoricalFeature, FeatureTable
from ebr.training.negatives import UniformNegatives


def _table(rng: np.random.Generator, n: int) -> FeatureTable:
    lengths = rng.integers(0, 4, n)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return FeatureTable(
        n,
        categorical={
            "id": CategoricalFeature.single(np.arange(n), n),
            "tags": CategoricalFeature(offsets, rng.integers(0, 9, offsets[-1]), 9),
        },
        dense={"x": rng.normal(size=(n, 2)).astype(np.float32), "y": rng.normal(size=n).astype(np.float32)},
    )


def test_gather_matches_per_row_reference():
    rng = np.random.default_rng(0)
    table = _table(rng, 50)
    rows = rng.integers(0, 50, 40)
    gatherer = FeatureGatherer(table, ["tags", "id"], ["y", "x"])
    inputs = gatherer(rows)
    as_dict = inputs.sparse.to_dict()
    tags = table.categorical["tags"]
    for position, row in enumerate(rows):
        expected = tags.values[tags.offsets[row] : tags.offsets[row + 1]]
        got = as_dict["tags"].values()[
            as_dict["tags"].offsets()[position] : as_dict["tags"].offsets()[position + 1]
        ]
        assert got.tolist() == expected.tolist()
    assert as_dict["id"].values().tolist() == rows.tolist()
    expected_dense = np.column_stack([table.dense["y"][rows], table.dense["x"][rows]])
    np.testing.assert_array_equal(inputs.dense.numpy(), expected_dense)
    assert inputs.ids.tolist() == rows.tolist()


def test_bags_carry_weights_that_average():
    """Own weights are normalised per bag; unweighted bags get 1 / size; a zero-sum bag is uniform."""
    offsets = np.array([0, 3, 3, 5, 6])
    weights = np.array([2.0, 1.0, 1.0, 0.0, 0.0, 0.5], dtype=np.float32)
    table = FeatureTable(
        4,
        categorical={
            "weighted": CategoricalFeature(offsets, np.array([1, 2, 3, 4, 5, 6]), 7, weights),
            "plain": CategoricalFeature(offsets, np.array([1, 2, 3, 4, 5, 6]), 7),
        },
    )
    rows = np.array([0, 1, 2, 3, 0])
    sparse = FeatureGatherer(table, ["weighted", "plain"], [])(rows).sparse.to_dict()
    expected_weighted, expected_plain = [], []
    for row in rows:
        own = weights[offsets[row] : offsets[row + 1]].astype(np.float64)
        size = len(own)
        if size == 0:
            continue  # an empty bag has no values and so no weights
        expected_weighted += list(own / own.sum()) if own.sum() > 0 else [1 / size] * size
        expected_plain += [1 / size] * size
    np.testing.assert_allclose(sparse["weighted"].weights().numpy(), expected_weighted, rtol=1e-6)
    np.testing.assert_allclose(sparse["plain"].weights().numpy(), expected_plain, rtol=1e-6)


def test_unknown_feature_is_named():
    table = _table(np.random.default_rng(1), 5)
    with pytest.raises(KeyError, match=r"'colour'.*available"):
        FeatureGatherer(table, ["colour"], [], source="pins")


def test_epoch_batches_cover_every_example_once_and_reshuffle():
    rng = np.random.default_rng(2)
    users, pins = _table(rng, 30), _table(rng, 20)
    events = pd.DataFrame({"user": rng.integers(0, 30, 100), "pin": rng.integers(0, 20, 100), "interest": -1})
    batches = EngagementBatches(
        events,
        FeatureGatherer(users, ["id"], []),
        FeatureGatherer(pins, ["id"], []),
        32,
        shuffle=True,
        seed=0,
    )
    first = [b.user.ids.tolist() for b in batches]
    second = [b.user.ids.tolist() for b in batches]
    assert sorted(functools.reduce(operator.iadd, first, [])) == sorted(events["user"].tolist())
    assert first != second  # a new permutation each pass
    again = EngagementBatches(
        events,
        FeatureGatherer(users, ["id"], []),
        FeatureGatherer(pins, ["id"], []),
        32,
        shuffle=True,
        seed=0,
    )
    assert [b.user.ids.tolist() for b in again] == first  # same seed, same order


def test_make_batch_with_negatives():
    rng = np.random.default_rng(3)
    users, pins = _table(rng, 10), _table(rng, 10)
    batch = make_batch(
        FeatureGatherer(users, ["id"], []),
        FeatureGatherer(pins, ["id"], []),
        np.array([1, 2]),
        np.array([3, 4]),
        negative_pins=np.array([5, 6, 7]),
    )
    assert len(batch) == 2
    assert batch.negatives.ids.tolist() == [5, 6, 7]


def _rank_batches(events, users, pins, rank: int, world_size: int) -> EngagementBatches:
    return EngagementBatches(
        events,
        FeatureGatherer(users, ["id"], []),
        FeatureGatherer(pins, ["id"], []),
        32,
        shuffle=True,
        seed=3,
        negatives=UniformNegatives(5).bind(np.arange(20)),
        drop_last=True,
        rank=rank,
        world_size=world_size,
    )


def test_two_ranks_take_complementary_halves_of_every_one_process_batch():
    rng = np.random.default_rng(4)
    users, pins = _table(rng, 30), _table(rng, 20)
    events = pd.DataFrame({"user": rng.integers(0, 30, 100), "pin": rng.integers(0, 20, 100), "interest": -1})
    whole = list(_rank_batches(events, users, pins, 0, 1))
    halves = [list(_rank_batches(events, users, pins, rank, 2)) for rank in (0, 1)]
    assert len(whole) == len(halves[0]) == len(halves[1]) == 3  # 100 rows, batches of 32, drop_last
    for full, first, second in zip(whole, *halves):
        assert len(first) == len(second) == 16
        assert first.user.ids.tolist() + second.user.ids.tolist() == full.user.ids.tolist()
        assert first.pin.ids.tolist() + second.pin.ids.tolist() == full.pin.ids.tolist()
        # one draw of random negatives per global batch, shared by the ranks
        assert first.negatives.ids.tolist() == second.negatives.ids.tolist() == full.negatives.ids.tolist()


def test_a_batch_that_does_not_split_into_equal_rank_shares_is_refused():
    rng = np.random.default_rng(5)
    users, pins = _table(rng, 5), _table(rng, 5)
    events = pd.DataFrame({"user": [0, 1], "pin": [1, 2], "interest": -1})
    gatherers = FeatureGatherer(users, ["id"], []), FeatureGatherer(pins, ["id"], [])
    with pytest.raises(ValueError, match=r"train\.batch_size=32 does not split into 3"):
        EngagementBatches(events, *gatherers, 32, shuffle=False, seed=0, world_size=3)
    with pytest.raises(ValueError, match="rank 2 is not a rank of a 2-process job"):
        EngagementBatches(events, *gatherers, 32, shuffle=False, seed=0, rank=2, world_size=2)
