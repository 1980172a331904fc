"""The serving service: corpus -> score terms -> index -> ranked ids, and the index's own recall."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ebr.data.csr import Csr
from ebr.evaluation.metrics import retrieval_metrics
from ebr.evaluation.protocol import evaluate_ranking, task_counts
from ebr.evaluation.simulation import SimulationConfig, simulate_online
from ebr.evaluation.task import EvalTask
from ebr.runs import WALL_CLOCK_METRICS
from ebr.serving.score_terms import ScoreColumns
from ebr.serving.service import RetrievalService, ann_recall

CONF = Path(__file__).resolve().parents[2] / "conf"


def _index(option: str):
    return instantiate(OmegaConf.load(CONF / "index" / f"{option}.yaml"))


def _random_task(rng: np.random.Generator, n_users: int, n_items: int) -> EvalTask:
    corpus = np.sort(rng.choice(5 * n_items, n_items, replace=False))
    rows = rng.integers(0, n_users, 6 * n_users)
    relevant = Csr.from_pairs(
        np.concatenate([np.arange(n_users), rows]), rng.choice(corpus, 7 * n_users), n_users
    )
    excluded_rows = rng.integers(0, n_users, 10 * n_users)
    exclude = Csr.from_pairs(excluded_rows, rng.choice(corpus, 10 * n_users), n_users)
    return EvalTask(
        np.arange(n_users) * 3, relevant, exclude, corpus, 500, {"cold_users": 2, "cold_items": 5}
    )


def _lookup(task: EvalTask, users: np.ndarray):
    """An encoder serving fixed embeddings: row i of `users` is task.user_ids[i]."""
    return lambda ids: users[np.searchsorted(task.user_ids, ids)]


def _brute_retrieval(task: EvalTask, users: np.ndarray, pins: np.ndarray, k: int) -> np.ndarray:
    scores = users.astype(np.float64) @ pins.astype(np.float64).T
    out = np.full((len(users), k), -1)
    for row in range(len(users)):
        banned = set()
        if task.exclude is not None:
            banned = set(
                task.exclude.values[task.exclude.offsets[row] : task.exclude.offsets[row + 1]].tolist()
            )
        ranked = [int(task.corpus[j]) for j in np.argsort(-scores[row]) if int(task.corpus[j]) not in banned]
        out[row, : min(k, len(ranked))] = ranked[:k]
    return out


class _Truth:
    """p_click rises with the pin id; the ranker's true score is the pin id; no label noise."""

    label_noise = 0.0

    def near_duplicate_groups(self, pins):
        return np.asarray(pins)

    def engagement_probabilities(self, users, pins, timestamp, noise=None):
        pins = np.broadcast_to(pins, np.broadcast_shapes(np.shape(users), np.shape(pins)))
        return pins / (pins.max() + 1.0), np.full(pins.shape, 0.3)

    def true_score(self, users, pins, timestamp):
        return np.broadcast_to(pins, np.broadcast_shapes(np.shape(users), np.shape(pins))).astype(np.float64)


def test_flat_service_matches_brute_force_in_small_query_batches() -> None:
    rng = np.random.default_rng(1)
    task = _random_task(rng, n_users=40, n_items=150)
    users = rng.standard_normal((40, 8)).astype(np.float32)
    pins = rng.standard_normal((150, 8)).astype(np.float32)
    service = RetrievalService(_lookup(task, users), pins, task.corpus, _index("flat"), batch_size=7)
    queries = service.user_vectors(task.user_ids)
    retrieved = service.search(queries, 30, task.exclude)
    expected = _brute_retrieval(task, users, pins, 30)
    assert (expected[:, :20] >= 0).all()
    np.testing.assert_array_equal(retrieved, expected)
    simulation = SimulationConfig(candidates=30, shown_per_session=5)
    metrics = evaluate_ranking(task, retrieved, (5, 20), _Truth(), simulation)
    reference = retrieval_metrics(expected, task.relevant, (5, 20))
    reference.update(simulate_online(_Truth(), task.user_ids, expected, 500.0, simulation))
    for key, value in reference.items():
        assert metrics[key] == pytest.approx(value), key
    assert service.ann_recall(queries) == 1.0
    counts = task_counts(task)
    assert (counts["eval/users"], counts["eval/corpus_size"]) == (40, 150)
    assert (counts["eval/cold_users"], counts["eval/cold_items"]) == (2, 5)


def _hnsw_service(
    seed: int, batch_size: int = 4096
) -> tuple[EvalTask, np.ndarray, np.ndarray, RetrievalService]:
    """(task, user vectors, unit pin vectors, an HNSW service over them): 50 users, 1,500 pins, d=16."""
    rng = np.random.default_rng(seed)
    task = _random_task(rng, n_users=50, n_items=1500)
    users = rng.standard_normal((50, 16)).astype(np.float32)
    pins = rng.standard_normal((1500, 16)).astype(np.float32)
    pins /= np.linalg.norm(pins, axis=1, keepdims=True)
    service = RetrievalService(_lookup(task, users), pins, task.corpus, _index("hnsw"), batch_size=batch_size)
    return task, users, pins, service


def test_hnsw_service_reports_its_recall_against_exact_search() -> None:
    task, users, pins, hnsw = _hnsw_service(seed=2)
    queries = hnsw.user_vectors(task.user_ids)
    approx = hnsw.search(queries, 100)
    exact = _brute_retrieval(EvalTask(task.user_ids, task.relevant, None, task.corpus, 0), users, pins, 100)
    overlap = np.mean([len(set(a) & set(e)) / 100 for a, e in zip(approx, exact)])
    assert 0.9 < hnsw.ann_recall(queries) <= 1.0
    assert hnsw.ann_recall(queries) == pytest.approx(overlap)


def test_ann_recall_times_the_index_against_flat_side_by_side() -> None:
    """The recall's two searches are timed chunk by chunk: the ratio is flat's seconds over the
    index's, a weighted mean of the chunks' ratios, so it is at least the lowest chunk's; an exact
    index measures nothing."""
    task, users, pins, hnsw = _hnsw_service(seed=4, batch_size=12)
    queries = hnsw.user_vectors(task.user_ids)
    hnsw.ann_recall(queries, n_queries=40)
    timings = hnsw.timings
    index_speed = timings["serving/side_by_side_queries_per_second"]
    flat_speed = timings["serving/side_by_side_flat_queries_per_second"]
    assert timings["serving/side_by_side_vs_flat"] == pytest.approx(index_speed / flat_speed)
    assert (
        0
        < timings["serving/side_by_side_vs_flat_min"]
        <= timings["serving/side_by_side_vs_flat"] * (1 + 1e-9)
    )
    assert set(timings) <= WALL_CLOCK_METRICS, "two runs of one config may differ in these only"
    flat = RetrievalService(_lookup(task, users), pins, task.corpus, _index("flat"))
    assert flat.ann_recall(queries) == 1.0
    assert not any(key.startswith("serving/side_by_side") for key in flat.timings)


def test_score_columns_reach_the_index() -> None:
    rng = np.random.default_rng(5)
    task = _random_task(rng, n_users=10, n_items=60)
    users = rng.standard_normal((10, 4)).astype(np.float32)
    pins = rng.standard_normal((60, 4)).astype(np.float32)
    boost = np.zeros((60, 1), dtype=np.float32)
    boost[7] = 100.0  # one pin the term puts first for everybody
    service = RetrievalService(
        _lookup(task, users), pins, task.corpus, _index("flat"), ScoreColumns(np.array([1.0]), boost)
    )
    retrieved = service.search(service.user_vectors(task.user_ids), 5)
    assert (retrieved[:, 0] == task.corpus[7]).all()


def test_service_checks_alignment() -> None:
    rng = np.random.default_rng(3)
    task = _random_task(rng, n_users=5, n_items=20)
    with pytest.raises(ValueError, match="pin_embeddings must have one row per corpus pin"):
        RetrievalService(lambda ids: np.ones((len(ids), 3)), np.ones((21, 3)), task.corpus, _index("flat"))
    service = RetrievalService(lambda ids: np.ones((4, 3)), np.ones((20, 3)), task.corpus, _index("flat"))
    with pytest.raises(ValueError, match="encode_users returned 4 rows for 5 users"):
        service.user_vectors(task.user_ids)


def test_ann_recall_matches_brute_force_overlap() -> None:
    rng = np.random.default_rng(1)
    k = 20
    exact = np.stack([rng.choice(100, k + 5, replace=False) for _ in range(30)])
    approx = np.stack([rng.choice(60, k + 5, replace=False) for _ in range(30)])
    approx[0, 10:] = -1  # a short approximate row
    expected = np.mean([len(set(a[:k]) - {-1} & set(e[:k])) / k for a, e in zip(approx, exact)])
    assert ann_recall(approx, exact, k) == pytest.approx(expected)
    assert ann_recall(exact, exact, k) == 1.0


def test_ann_recall_small_corpus_denominator() -> None:
    exact = np.array([[3, 1, -1, -1]])
    assert ann_recall(np.array([[1, 3, -1, -1]]), exact, k=4) == 1.0
    assert ann_recall(np.array([[1, -1, -1, -1]]), exact, k=4) == 0.5


def test_the_service_times_its_index_build_embedding_and_search() -> None:
    rng = np.random.default_rng(3)
    task = _random_task(rng, n_users=30, n_items=60)
    users = rng.standard_normal((30, 8)).astype(np.float32)
    pins = rng.standard_normal((60, 8)).astype(np.float32)
    service = RetrievalService(_lookup(task, users), pins, task.corpus, _index("flat"), batch_size=7)
    assert set(service.timings) == {"serving/index_build_seconds"}
    queries = service.user_vectors(task.user_ids)
    service.search(queries, 10, task.exclude)
    timings = service.timings
    assert set(timings) == {
        "serving/index_build_seconds",
        "serving/user_embed_seconds",
        "serving/search_seconds",
        "serving/search_users_per_second",
    }
    assert set(timings) <= WALL_CLOCK_METRICS, "two runs of one config may differ in these only"
    assert all(value > 0 for value in timings.values())
    assert timings["serving/search_users_per_second"] == pytest.approx(30 / timings["serving/search_seconds"])
