"""Building evaluation tasks from splits, the popularity baseline, and the end-to-end protocol."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ebr.data.schema import CLICK, IMPRESSION, REPIN, DataValidationError, Split
from ebr.evaluation.metrics import retrieval_metrics
from ebr.evaluation.popularity import popularity_ranking
from ebr.evaluation.protocol import evaluate_embeddings, evaluate_ranking
from ebr.evaluation.simulation import SimulationConfig, simulate_online
from ebr.evaluation.task import Csr, EvalTask, build_eval_task
from ebr.serving.index import IndexConfig

CONF = Path(__file__).resolve().parents[2] / "conf"


def _events(rows: list[tuple[int, int, int, int]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["user", "pin", "timestamp", "event"])
    frame["interest"] = -1
    return frame


class _Forbidden:
    """Stands in for a window that must not be read: any attribute access fails the test."""

    def __getattr__(self, name: str):
        raise AssertionError(f"split.test was read (attribute {name!r})")


def _split() -> Split:
    train = _events([(0, 1, 10, CLICK), (0, 2, 11, REPIN), (1, 3, 12, IMPRESSION), (2, 4, 13, CLICK)])
    test = _events(
        [
            (0, 2, 100, CLICK),  # repeat of a train engagement
            (0, 5, 101, REPIN),  # new and in the corpus
            (0, 9, 102, CLICK),  # off the corpus
            (1, 9, 103, CLICK),  # user 1 engages only off the corpus: cold
            (2, 4, 104, REPIN),  # user 2 only repeats
            (3, 1, 105, CLICK),
            (3, 1, 106, REPIN),  # duplicate pair
            (3, 5, 107, IMPRESSION),  # impressions are not engagements
        ]
    )
    val = _events([(4, 5, 60, CLICK), (4, 2, 70, CLICK), (0, 1, 80, REPIN)])
    return Split(pretrain=train.iloc[:0], train=train, val=val, test=test, reference_time=100)


CORPUS = np.array([1, 2, 4, 5])


def _rows(csr: Csr) -> list[list[int]]:
    return [csr.values[a:b].tolist() for a, b in zip(csr.offsets[:-1], csr.offsets[1:])]


def test_build_eval_task_drops_and_counts_cold_users() -> None:
    task = build_eval_task(_split(), CORPUS)
    assert task.user_ids.tolist() == [0, 3]
    assert _rows(task.relevant) == [[5], [1]]
    assert _rows(task.exclude) == [[1, 2], []]
    assert task.timestamp == 100
    assert task.cold == {
        "window_users": 4,
        "cold_users": 1,
        "cold_items": 2,
        "repeat_items": 2,
        "repeat_only_users": 1,
    }


def test_build_eval_task_without_exclusion_keeps_repeats() -> None:
    task = build_eval_task(_split(), CORPUS, exclude_train=False)
    assert task.user_ids.tolist() == [0, 2, 3]
    assert _rows(task.relevant) == [[2, 5], [4], [1]]
    assert task.exclude is None
    assert task.cold["repeat_items"] == 0


def test_val_window_never_reads_test() -> None:
    split = _split()
    split = Split(split.pretrain, split.train, split.val, _Forbidden(), split.reference_time)
    task = build_eval_task(split, CORPUS, window="val")
    assert task.user_ids.tolist() == [4]  # user 0's val pin 1 repeats a train pin
    assert _rows(task.relevant) == [[2, 5]]
    assert task.timestamp == 60


def test_bad_window_and_columns_are_named() -> None:
    with pytest.raises(ValueError, match="window must be one of"):
        build_eval_task(_split(), CORPUS, window="future")
    split = _split()
    broken = Split(split.pretrain, split.train, split.val, split.test.drop(columns="pin"), 100)
    with pytest.raises(DataValidationError, match=r"split.test: missing column\(s\) \['pin'\]"):
        build_eval_task(broken, CORPUS)
    with pytest.raises(ValueError, match="corpus must hold sorted"):
        build_eval_task(split, np.array([5, 1]))


def _random_split(rng: np.random.Generator, n_users: int = 60, n_pins: int = 80) -> Split:
    def window(n: int, start: int) -> pd.DataFrame:
        frame = pd.DataFrame(
            {
                "user": rng.integers(0, n_users, n),
                "pin": rng.zipf(1.5, n) % n_pins,
                "timestamp": start + np.arange(n),
                "event": rng.choice([IMPRESSION, CLICK, REPIN], n),
            }
        )
        frame["interest"] = -1
        return frame

    train, test = window(1500, 0), window(400, 10_000)
    return Split(pretrain=train.iloc[:0], train=train, val=test.iloc[:0], test=test, reference_time=10_000)


def test_popularity_ranking_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    split = _random_split(rng)
    corpus = np.arange(0, 80, 2)
    task = build_eval_task(split, corpus)
    ranking = popularity_ranking(split.train, task, k=15)
    engaged = split.train[split.train["event"] >= CLICK]
    counts = Counter(int(p) for p in engaged["pin"] if p in set(corpus.tolist()))
    order = sorted(corpus.tolist(), key=lambda pin: (-counts.get(pin, 0), pin))
    for row, user in enumerate(task.user_ids):
        seen = set(engaged.loc[engaged["user"] == user, "pin"].tolist())
        expected = [pin for pin in order if pin not in seen][:15]
        assert ranking[row].tolist() == expected + [-1] * (15 - len(expected))
    assert len(set(ranking[:, 0].tolist())) > 1, "exclusion should change some users' top pin"


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


def _brute_retrieval(task: EvalTask, users: np.ndarray, pins: np.ndarray, k: int) -> np.ndarray:
    scores = users.astype(np.float64) @ pins.astype(np.float64).T
    out = np.full((len(users), k), -1)
    for row in range(len(users)):
        banned = set(task.exclude.values[task.exclude.offsets[row] : task.exclude.offsets[row + 1]].tolist())
        ranked = [int(task.corpus[j]) for j in np.argsort(-scores[row]) if int(task.corpus[j]) not in banned]
        out[row, : min(k, len(ranked))] = ranked[:k]
    return out


class _Truth:
    """p_click rises with the pin id; the ranker's true score is the pin id."""

    def engagement_probabilities(self, users, pins, timestamp):
        pins = np.broadcast_to(pins, np.broadcast_shapes(np.shape(users), np.shape(pins)))
        return pins / (pins.max() + 1.0), np.full(pins.shape, 0.3)

    def true_score(self, users, pins, timestamp):
        return np.broadcast_to(pins, np.broadcast_shapes(np.shape(users), np.shape(pins))).astype(np.float64)


def test_evaluate_embeddings_flat_matches_brute_force() -> None:
    rng = np.random.default_rng(1)
    task = _random_task(rng, n_users=40, n_items=150)
    users = rng.standard_normal((40, 8)).astype(np.float32)
    pins = rng.standard_normal((150, 8)).astype(np.float32)
    simulation = SimulationConfig(candidates=30, shown_per_session=5)
    metrics = evaluate_embeddings(
        task,
        users,
        pins,
        IndexConfig(),
        ks=(5, 20),
        truth=_Truth(),
        simulation=simulation,
        progress=False,
        chunk_size=7,
    )
    expected = _brute_retrieval(task, users, pins, 30)
    assert (expected[:, :20] >= 0).all()
    reference = retrieval_metrics(expected, task.relevant, (5, 20))
    reference.update(simulate_online(_Truth(), task.user_ids, expected, 500.0, simulation))
    for key, value in reference.items():
        assert metrics[key] == pytest.approx(value), key
    assert metrics["ann_recall@100"] == 1.0
    assert metrics["eval/users"] == 40
    assert metrics["eval/corpus_size"] == 150
    assert metrics["eval/cold_users"] == 2
    assert metrics["eval/cold_items"] == 5


def test_evaluate_embeddings_hnsw_reports_its_recall() -> None:
    rng = np.random.default_rng(2)
    task = _random_task(rng, n_users=50, n_items=1500)
    users = rng.standard_normal((50, 16)).astype(np.float32)
    pins = rng.standard_normal((1500, 16)).astype(np.float32)
    pins /= np.linalg.norm(pins, axis=1, keepdims=True)
    config = IndexConfig(
        factory="HNSW16,Flat", build_params={"hnsw": {"efConstruction": 80}}, search_params={"efSearch": 100}
    )
    metrics = evaluate_embeddings(task, users, pins, config, ks=(10, 100), progress=False)
    assert 0.9 < metrics["ann_recall@100"] <= 1.0
    assert not any(key.startswith("sim/") for key in metrics)
    exact = evaluate_embeddings(task, users, pins, IndexConfig(), ks=(10, 100), progress=False)
    assert metrics["recall@100"] == pytest.approx(exact["recall@100"], abs=0.05)


def test_evaluate_embeddings_checks_alignment() -> None:
    rng = np.random.default_rng(3)
    task = _random_task(rng, n_users=5, n_items=20)
    with pytest.raises(ValueError, match="user_embeddings must have one row per task user"):
        evaluate_embeddings(task, np.ones((4, 3)), np.ones((20, 3)), IndexConfig(), ks=(5,), progress=False)
    with pytest.raises(ValueError, match="pin_embeddings must have one row per corpus pin"):
        evaluate_embeddings(task, np.ones((5, 3)), np.ones((21, 3)), IndexConfig(), ks=(5,), progress=False)


def test_evaluate_ranking_prefixes_keys() -> None:
    rng = np.random.default_rng(4)
    split = _random_split(rng)
    task = build_eval_task(split, np.arange(80))
    ranking = popularity_ranking(split.train, task, 50)
    metrics = evaluate_ranking(task, ranking, ks=(10, 50), prefix="popularity")
    assert metrics == {
        f"popularity/{k}": v for k, v in retrieval_metrics(ranking, task.relevant, (10, 50)).items()
    }
    assert metrics["popularity/recall@50"] > 0


def test_config_files_instantiate() -> None:
    assert instantiate(OmegaConf.load(CONF / "index" / "flat.yaml")) == IndexConfig(factory="Flat")
    hnsw = instantiate(OmegaConf.load(CONF / "index" / "hnsw.yaml"))
    assert hnsw == IndexConfig(
        factory="HNSW32,Flat", build_params={"hnsw": {"efConstruction": 200}}, search_params={"efSearch": 128}
    )
    evaluation = OmegaConf.load(CONF / "eval" / "default.yaml")
    assert list(evaluation.ks) == [10, 50, 100]
    assert evaluation.exclude_train is True
    assert instantiate(evaluation.simulation) == SimulationConfig()
