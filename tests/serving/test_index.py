"""The faiss item index (exact and HNSW), exclusion, persistence, and the training-window corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ebr.data.csr import Csr
from ebr.data.schema import CLICK, IMPRESSION, REPIN, DataValidationError, Split
from ebr.evaluation.metrics import ann_recall
from ebr.serving.corpus import training_window_corpus
from ebr.serving.index import IndexConfig, ItemIndex, exact_search


def _normalised(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute_top(
    items: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int, banned=None
) -> list[list[int]]:
    scores = queries.astype(np.float64) @ items.astype(np.float64).T
    result = []
    for row, query_scores in enumerate(scores):
        ranked = [int(ids[j]) for j in np.argsort(-query_scores, kind="stable")]
        if banned is not None:
            ranked = [i for i in ranked if i not in banned[row]]
        result.append(ranked[:k])
    return result


def test_index_config_validates_kind_and_sizes() -> None:
    with pytest.raises(ValueError, match=r"IndexConfig.kind must be one of \['flat', 'hnsw'\]"):
        IndexConfig(kind="ivf")
    with pytest.raises(ValueError, match=r"IndexConfig\.ef_search"):
        IndexConfig(kind="hnsw", ef_search=0)


def test_flat_search_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    items, queries = _normalised(rng, 300, 8), _normalised(rng, 25, 8)
    ids = rng.permutation(10_000)[:300]
    found, scores = ItemIndex(items, ids, IndexConfig()).search(queries, 15)
    assert found.dtype == np.int64
    assert scores.dtype == np.float32
    assert found.tolist() == _brute_top(items, ids, queries, 15)
    position = {int(i): j for j, i in enumerate(ids)}
    expected_scores = np.einsum("md,mkd->mk", queries, items[np.vectorize(position.get)(found)])
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-6)
    exact_ids, _ = exact_search(items, ids, queries, 15)
    np.testing.assert_array_equal(exact_ids, found)


def test_exclusion_removes_items_and_keeps_k() -> None:
    rng = np.random.default_rng(1)
    items, queries = _normalised(rng, 200, 6), _normalised(rng, 30, 6)
    ids = np.arange(200) * 3 + 7
    index = ItemIndex(items, ids, IndexConfig())
    # ban each query's own top items (the ones most at risk), a random extra set, and ids not indexed
    top = _brute_top(items, ids, queries, 40)
    banned = [set(top[q][: q % 25]) | set(rng.choice(ids, q % 7).tolist()) | {1, 2} for q in range(30)]
    rows = np.concatenate([[q] * len(b) for q, b in enumerate(banned)])
    exclude = Csr.from_pairs(rows, np.concatenate([sorted(b) for b in banned]), 30)
    found, scores = index.search(queries, 20, exclude)
    assert (found >= 0).all(), "every query still gets k results"
    for q in range(30):
        assert not set(found[q].tolist()) & banned[q]
    assert found.tolist() == _brute_top(items, ids, queries, 20, banned)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


def test_exclusion_pads_when_the_corpus_runs_out() -> None:
    rng = np.random.default_rng(2)
    items = _normalised(rng, 20, 4)
    exclude = Csr.from_pairs(np.zeros(10, dtype=np.int64), np.arange(10), 1)
    found, scores = ItemIndex(items, np.arange(20), IndexConfig()).search(items[:1], 15, exclude)
    assert sorted(found[0, :10].tolist()) == list(range(10, 20))
    assert found[0, 10:].tolist() == [-1] * 5
    assert np.isneginf(scores[0, 10:]).all()


def test_hnsw_recall_against_exact_search() -> None:
    rng = np.random.default_rng(3)
    items, queries = _normalised(rng, 2000, 16), _normalised(rng, 100, 16)
    ids = np.arange(2000) + 100
    config = IndexConfig(kind="hnsw", hnsw_m=16, ef_construction=100, ef_search=128)
    approx, _ = ItemIndex(items, ids, config).search(queries, 100)
    exact, _ = exact_search(items, ids, queries, 100)
    overlap = np.mean([len(set(a.tolist()) & set(e.tolist())) / 100 for a, e in zip(approx, exact)])
    assert overlap > 0.9
    assert ann_recall(approx, exact, 100) == pytest.approx(overlap)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_save_load_round_trip(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(4)
    items, queries = _normalised(rng, 150, 8), _normalised(rng, 10, 8)
    config = IndexConfig(kind=kind, hnsw_m=8, ef_construction=40, ef_search=33)
    index = ItemIndex(items, np.arange(150) * 2, config)
    before = index.search(queries, 12)
    index.save(tmp_path / "index")
    loaded = ItemIndex.load(tmp_path / "index")
    assert loaded.config == config
    after = loaded.search(queries, 12)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])


def test_load_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"index\.faiss"):
        ItemIndex.load(tmp_path)


@pytest.mark.parametrize(
    ("ids", "message"),
    [(np.array([0, 1, 1]), "distinct"), (np.array([0, 1]), "3 rows"), (np.array([0, -1, 2]), "non-negative")],
)
def test_bad_item_ids_are_rejected(ids: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ItemIndex(np.ones((3, 4), dtype=np.float32), ids, IndexConfig())


def test_query_dimension_and_exclusion_rows_are_checked() -> None:
    index = ItemIndex(np.eye(4, dtype=np.float32), np.arange(4), IndexConfig())
    with pytest.raises(ValueError, match="dimension 3"):
        index.search(np.ones((2, 3)), 2)
    with pytest.raises(ValueError, match="exclude has 1 rows for 2 queries"):
        index.search(np.ones((2, 4)), 2, Csr.from_pairs(np.array([0]), np.array([1]), 1))


def _events(rows: list[tuple[int, int, int, int]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["user", "pin", "timestamp", "event"])
    frame["interest"] = -1
    return frame


def test_training_window_corpus_keeps_engaged_train_pins() -> None:
    train = _events([(0, 9, 1, CLICK), (1, 3, 2, REPIN), (2, 5, 3, IMPRESSION), (0, 3, 4, CLICK)])
    later = _events([(0, 11, 10, CLICK)])
    split = Split(pretrain=later, train=train, val=later, test=later, reference_time=10)
    corpus = training_window_corpus(split)
    assert corpus.tolist() == [3, 9]
    assert corpus.dtype == np.int64
    empty = Split(later, _events([(0, 1, 1, IMPRESSION)]), later, later, 10)
    with pytest.raises(DataValidationError, match=r"split\.train"):
        training_window_corpus(empty)
