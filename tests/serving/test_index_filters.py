"""Allow lists on the faiss item index: exact filtered top k, approximate indexes, with exclusion."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ebr.data.csr import Csr
from ebr.serving.index import IndexConfig, ItemIndex
from tests.serving.index_vectors import HNSW, IVFPQ, _brute_top, _clustered, _csr, _normalised, _overlap


def test_allow_lists_give_the_exact_filtered_top_k_with_flat() -> None:
    rng = np.random.default_rng(5)
    items, queries = _normalised(rng, 400, 8), _normalised(rng, 40, 8)
    ids = rng.permutation(5000)[:400]
    # per-query sets of varied sizes, some shared, with ids that are not in the index
    pool = [set(rng.choice(ids, size, replace=False).tolist()) | {99_999} for size in (3, 30, 150, 400)]
    allowed = [pool[q % 4] if q % 3 else set(rng.choice(ids, 60, replace=False).tolist()) for q in range(40)]
    index = ItemIndex(items, ids, IndexConfig())
    found, scores = index.search(queries, 20, allow=_csr(allowed))
    expected = _brute_top(items, ids, queries, 20, allowed=allowed)
    for q in range(40):
        assert found[q][found[q] >= 0].tolist() == expected[q]
        assert (found[q] < 0).sum() == 20 - len(expected[q])  # the 3-item sets pad with -1
    assert np.isneginf(scores[found < 0]).all()
    shared = np.array(sorted(pool[2]))
    found_shared, _ = index.search(queries, 20, allow=shared)
    assert found_shared.tolist() == _brute_top(items, ids, queries, 20, allowed=[pool[2]] * 40)


@pytest.mark.parametrize(
    "config",
    [
        HNSW,
        IndexConfig(factory="HNSW32,Flat", search_params={"efSearch": 64}, exact_filter_max=0),
        IndexConfig(factory="IVF1024,Flat", search_params={"nprobe": 16}, exact_filter_max=0),
        dataclasses.replace(IVFPQ, exact_filter_max=0),
    ],
    ids=["hnsw_exact_small_sets", "hnsw_sub_indexes", "ivf_sub_indexes", "ivfpq_sub_indexes"],
)
def test_allow_lists_with_approximate_indexes(config: IndexConfig) -> None:
    rng = np.random.default_rng(6)
    items, queries = _clustered(rng, 4000, 16), _clustered(rng, 60, 16)
    ids = np.arange(4000) * 5
    groups = [set(ids[g::4].tolist()) for g in range(4)]
    allowed = [groups[q % 4] for q in range(60)]
    found, _ = ItemIndex(items, ids, config).search(queries, 10, allow=_csr(allowed))
    for q in range(60):
        assert set(found[q].tolist()) <= allowed[q], "never a disallowed id"
    assert (found >= 0).all()
    overlap = _overlap(found, _brute_top(items, ids, queries, 10, allowed=allowed))
    assert (
        overlap == 1.0
        if config.exact_filter_max >= 1000
        else overlap > (0.5 if "PQ" in config.factory else 0.9)
    )


def test_short_approximate_results_are_completed_exactly() -> None:
    """IVF probing 1 list of ~30 items cannot fill k = 100: those queries are redone exactly."""
    rng = np.random.default_rng(8)
    items, queries = _clustered(rng, 3000, 8), _clustered(rng, 20, 8)
    config = IndexConfig(factory="IVF1024,Flat", search_params={"nprobe": 1}, exact_filter_max=0)
    allowed = [set(range(0, 3000, 2))] * 20
    found, scores = ItemIndex(items, np.arange(3000), config).search(queries, 100, allow=_csr(allowed))
    assert (found >= 0).all()
    assert found.tolist() == _brute_top(items, np.arange(3000), queries, 100, allowed=allowed)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


def test_allow_and_exclude_together() -> None:
    rng = np.random.default_rng(9)
    items, queries = _normalised(rng, 300, 6), _normalised(rng, 30, 6)
    ids = np.arange(300) + 1000
    allowed = [set(rng.choice(ids, 40, replace=False).tolist()) for _ in range(30)]
    # ban the allowed set's best items, some outside it, and for the last query all but 5 of it
    top = _brute_top(items, ids, queries, 10, allowed=allowed)
    banned = [set(top[q][: q % 8]) | set(rng.choice(ids, 5).tolist()) for q in range(30)]
    banned[-1] = set(sorted(allowed[-1])[5:])
    found, _ = ItemIndex(items, ids, IndexConfig()).search(
        queries, 10, exclude=_csr(banned), allow=_csr(allowed)
    )
    expected = _brute_top(items, ids, queries, 10, banned, allowed)
    for q in range(30):
        assert found[q][found[q] >= 0].tolist() == expected[q]
        assert not set(found[q].tolist()) & banned[q]
    assert (found[:-1] >= 0).all()
    assert (found[-1] >= 0).sum() == 5


def test_empty_and_bad_allow_lists() -> None:
    rng = np.random.default_rng(10)
    items = _normalised(rng, 50, 4)
    index = ItemIndex(items, np.arange(50), IndexConfig())
    found, scores = index.search(items[:3], 5, allow=np.array([1000, 2000]))
    assert (found == -1).all()
    assert np.isneginf(scores).all()
    with pytest.raises(ValueError, match="allow has 1 rows for 3 queries"):
        index.search(items[:3], 5, allow=Csr.from_pairs(np.array([0]), np.array([1]), 1))
    with pytest.raises(ValueError, match="allow must be a Csr or a 1-D integer array"):
        index.search(items[:3], 5, allow=np.array([[1, 2]]))
