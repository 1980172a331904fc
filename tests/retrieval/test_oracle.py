"""The oracle retriever (model=oracle): the world's true score against a brute force, its refusal of
data without a truth, and a whole job through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from jobs import REPO, run_module
from omegaconf import OmegaConf

from ebr.data.schema import InteractionData
from ebr.data.splits import global_temporal_split
from ebr.data.world import WorldConfig, generate_world
from ebr.evaluation.task import build_eval_task
from ebr.retrieval.oracle import Oracle
from ebr.retrieval.protocol import FitContext, Retriever
from ebr.serving.corpus import training_window_corpus

TINY = WorldConfig(n_users=1500, n_pins=800, n_interests=12, n_days=30)
K = 50


@pytest.fixture(scope="module")
def fitted() -> tuple[InteractionData, object, Oracle]:
    data = generate_world(TINY)
    split = global_temporal_split(data, test_days=7, val_days=3, train_days=21)
    oracle = Oracle()
    oracle.fit(data, split, FitContext(corpus=training_window_corpus(split), run_dir=Path(".")))
    return data, split, oracle


def test_the_config_builds_an_oracle_that_follows_the_protocol() -> None:
    oracle = instantiate(OmegaConf.load(REPO / "conf" / "model" / "oracle.yaml"))
    assert isinstance(oracle, Oracle)
    assert isinstance(oracle, Retriever)
    assert oracle.own_metrics() == {}


def test_ranking_is_the_true_scores_brute_force_order(fitted) -> None:
    data, split, oracle = fitted
    task = build_eval_task(split, training_window_corpus(split))
    retrieved = oracle.retrieve(task, K)
    assert retrieved.shape == (len(task.user_ids), K)
    for row in range(0, len(task.user_ids), max(1, len(task.user_ids) // 7)):
        user = int(task.user_ids[row])
        excluded = set(task.exclude.values[task.exclude.offsets[row] : task.exclude.offsets[row + 1]])
        candidates = np.array([p for p in task.corpus if p not in excluded])
        # one pair at a time through the truth's own logit, not its matrix path
        scores = np.array([data.truth.true_score(user, int(p), task.timestamp) for p in candidates])
        best = candidates[np.argsort(-scores, kind="stable")[:K]]
        assert not excluded & set(retrieved[row].tolist())
        np.testing.assert_array_equal(retrieved[row], best)


def test_data_without_a_truth_is_refused_naming_the_model(fitted) -> None:
    data, split, _ = fitted
    real = InteractionData("movielens", data.events, data.users, data.pins)
    with pytest.raises(ValueError, match=r"model=oracle.*data\.truth is None"):
        Oracle().fit(real, split, FitContext(corpus=training_window_corpus(split), run_dir=Path(".")))
    with pytest.raises(RuntimeError, match="before fit"):
        Oracle().retrieve(build_eval_task(split, training_window_corpus(split)), K)


def test_a_job_with_the_oracle_beats_popularity(tmp_path: Path) -> None:
    args = ["data=synthetic_tiny", "model=oracle", "logger=none", f"hydra.run.dir={tmp_path}"]
    result = run_module("ebr.train", args)
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["recall@100"] > metrics["popularity/recall@100"]
    assert metrics["sim/repins"] > metrics["popularity/sim/repins"]
