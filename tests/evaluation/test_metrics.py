"""Retrieval metrics, ANN recall and the Csr helpers against brute-force per-user references."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ebr.data.csr import Csr, first_kept
from ebr.evaluation.metrics import retrieval_metrics


def _random_case(rng: np.random.Generator, n_users: int, n_items: int, depth: int):
    relevant_sets, retrieved = [], np.full((n_users, depth), -1, dtype=np.int64)
    for user in range(n_users):
        n_relevant = int(rng.integers(1, 40))
        relevant_sets.append(set(rng.choice(n_items, n_relevant, replace=False).tolist()))
        length = depth if user % 3 else int(rng.integers(0, depth + 1))  # every third row is padded
        # bias the ranking toward relevant items so hits are frequent
        pool = np.array(sorted(relevant_sets[-1]) + rng.choice(n_items, 60, replace=False).tolist())
        ranking = list(dict.fromkeys(rng.permutation(pool).tolist()))
        ranking += [i for i in rng.permutation(n_items).tolist() if i not in set(ranking)]
        retrieved[user, :length] = ranking[:length]
    rows = np.concatenate([[u] * len(s) for u, s in enumerate(relevant_sets)])
    values = np.concatenate([sorted(s) for s in relevant_sets])
    return retrieved, relevant_sets, Csr.from_pairs(rows, values, n_users)


def _brute_force(retrieved: np.ndarray, relevant_sets: list[set[int]], k: int) -> dict[str, float]:
    recall, ndcg, hr = [], [], []
    for row, relevant in zip(retrieved, relevant_sets):
        top = [int(i) for i in row[:k] if i >= 0]
        gains = [1.0 if item in relevant else 0.0 for item in top]
        dcg = sum(g / math.log2(rank + 1) for rank, g in enumerate(gains, start=1))
        idcg = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(k, len(relevant)) + 1))
        recall.append(sum(gains) / len(relevant))
        ndcg.append(dcg / idcg)
        hr.append(float(sum(gains) > 0))
    return {f"recall@{k}": np.mean(recall), f"ndcg@{k}": np.mean(ndcg), f"hr@{k}": np.mean(hr)}


def test_metrics_match_brute_force_on_random_data() -> None:
    rng = np.random.default_rng(0)
    retrieved, relevant_sets, relevant = _random_case(rng, n_users=80, n_items=300, depth=100)
    ks = (1, 5, 10, 50, 100)
    metrics = retrieval_metrics(retrieved, relevant, ks)
    expected = {}
    for k in ks:
        expected.update(_brute_force(retrieved, relevant_sets, k))
    assert set(metrics) == set(expected)
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-12), key
    assert 0 < metrics["recall@10"] < metrics["recall@100"] < 1


def test_hand_computed_example() -> None:
    retrieved = np.array([[5, 1, 9, 3], [7, -1, -1, -1]])
    relevant = Csr.from_pairs(np.array([0, 0, 0, 1, 1]), np.array([1, 3, 7, 2, 7]), 2)
    metrics = retrieval_metrics(retrieved, relevant, ks=(2, 4))
    # user 0: hits at ranks 2 and 4 out of 3 relevant; user 1: hit at rank 1 out of 2 relevant
    ndcg0_at4 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3) + 1 / math.log2(4))
    ndcg0_at2 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    ndcg1 = 1.0 / (1 + 1 / math.log2(3))  # ideal DCG over min(K, 2) = 2 relevant
    assert metrics["ndcg@4"] == pytest.approx((ndcg0_at4 + ndcg1) / 2)
    assert metrics["ndcg@2"] == pytest.approx((ndcg0_at2 + ndcg1) / 2)
    assert metrics["recall@4"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert metrics["recall@2"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert metrics["hr@2"] == 1.0


def test_perfect_ranking_scores_one() -> None:
    relevant = Csr.from_pairs(np.array([0, 0, 1]), np.array([4, 8, 2]), 2)
    retrieved = np.array([[8, 4, 0], [2, 5, 6]])
    metrics = retrieval_metrics(retrieved, relevant, ks=(3,))
    assert metrics == {"recall@3": 1.0, "ndcg@3": 1.0, "hr@3": 1.0}


@pytest.mark.parametrize(
    ("retrieved", "message"),
    [
        (np.array([[1, 2, 1]]), "more than once"),
        (np.array([[1, 2]]), "fewer than the largest cut-off"),
        (np.array([[1, -2, 3]]), "non-negative"),
        (np.array([[1.0, 2.0, 3.0]]), "integer"),
    ],
)
def test_bad_retrieved_matrix_is_rejected(retrieved: np.ndarray, message: str) -> None:
    relevant = Csr.from_pairs(np.array([0]), np.array([1]), 1)
    with pytest.raises(ValueError, match=message):
        retrieval_metrics(retrieved, relevant, ks=(3,))


def test_user_without_relevant_items_is_rejected() -> None:
    relevant = Csr.from_pairs(np.array([0]), np.array([1]), 2)
    with pytest.raises(ValueError, match="row 1 has no relevant"):
        retrieval_metrics(np.array([[1], [2]]), relevant, ks=(1,))


def test_csr_from_pairs_dedups_and_sorts() -> None:
    csr = Csr.from_pairs(np.array([2, 0, 2, 2, 0]), np.array([9, 5, 1, 9, 5]), 4)
    assert csr.offsets.tolist() == [0, 1, 1, 3, 3]
    assert csr.values.tolist() == [5, 1, 9]
    assert csr.slice(2, 4).values.tolist() == [1, 9]
    assert csr.slice(2, 4).offsets.tolist() == [0, 2, 2]


def test_csr_rejects_unsorted_rows_and_bad_offsets() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        Csr(np.array([0, 2]), np.array([5, 3]))
    with pytest.raises(ValueError, match="offsets"):
        Csr(np.array([0, 3]), np.array([1, 2]))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        Csr.from_pairs(np.array([2]), np.array([1]), 2)
    Csr(np.array([0, 2, 3]), np.array([3, 5, 1]))  # a new row may start lower


@pytest.mark.parametrize(
    ("offset", "scale"),
    [(0, 1), (7, 1), (7, 2**22), (2**61, 1)],
    ids=[
        "ids from 0",
        "ids from 7",
        "ids spread wider than the bitmap: searched only",
        "ids too wide to pack: ranked first",
    ],
)
def test_csr_contains_matches_sets(offset: int, scale: int) -> None:
    rng = np.random.default_rng(2)
    rows, values = rng.integers(0, 12, 200), rng.integers(0, 50, 200) * scale + offset
    if offset == 2**61:
        values[0] = 3  # the range of ids spans ~2^61, so (row, id) does not fit one int64 key
    csr = Csr.from_pairs(rows, values, 13)  # row 12 stays empty
    near = rng.integers(-1, 55, (13, 20))
    matrix = np.concatenate([near, np.where(near >= 0, near * scale + offset, -1)], axis=1)
    matrix[0, 0] = -1
    sets = [set(values[rows == r].tolist()) for r in range(13)]
    expected = np.array([[int(x) in sets[r] for x in matrix[r]] for r in range(13)])
    np.testing.assert_array_equal(csr.contains(matrix), expected)
    assert expected.any()


def test_first_kept_matches_python() -> None:
    rng = np.random.default_rng(3)
    keep = rng.random((20, 12)) < 0.4
    columns, valid = first_kept(keep, 5)
    for row in range(20):
        kept = np.flatnonzero(keep[row])[:5].tolist()
        assert columns[row, : len(kept)].tolist() == kept
        assert valid[row].tolist() == [True] * len(kept) + [False] * (5 - len(kept))
