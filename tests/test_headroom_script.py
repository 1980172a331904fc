"""The headroom study (ebr.diagnostics.headroom, scripts/headroom.py its command line): its structure,
its ideal ranker against a brute force, and the funnel's reward for knowing the truth (the truth's
top-100 beats a features-only top-100 on every simulated metric)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import hydra
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from ebr.config import register_schemas
from ebr.data.csr import Csr
from ebr.data.schema import CLICK
from ebr.data.splits import global_temporal_split
from ebr.data.world import WorldConfig, generate_world
from ebr.diagnostics.headroom import study
from ebr.diagnostics.headroom.rankers import CEILING, features_only, top_k
from ebr.evaluation.corpus_metrics import share_in_corpus
from ebr.evaluation.simulation import SimulationConfig, simulate_sessions
from ebr.evaluation.task import build_simulation_task
from ebr.serving.corpus import training_window_corpus

REPO = Path(__file__).resolve().parent.parent
# a world smaller than synthetic_tiny, with the default split's 31 days
OVERRIDES = ["data=synthetic_tiny", "data.config.n_users=600", "data.config.n_pins=400"]
ROWS = ["own_taste", "remapping"]
SEEDS = [0, 1]


@pytest.fixture(scope="module")
def setup():
    register_schemas()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = compose("train", overrides=OVERRIDES)
    base = hydra.utils.instantiate(cfg.data.config)
    return cfg, base


@pytest.fixture(scope="module")
def results(setup):
    cfg, base = setup
    return study.measure(ROWS, SEEDS, base, cfg, None, sessions=2)


def test_results_hold_every_row_state_seed_variant_and_metric(results) -> None:
    assert list(results) == ROWS
    for name in ROWS:
        row = study.ROWS[name]
        for state in ("on", "off"):
            assert sorted(results[name][state]) == SEEDS
            for seed in SEEDS:
                variants = results[name][state][seed]
                assert {row.known, row.unknown} <= set(variants)
                for metrics in variants.values():
                    assert set(study.METRICS) <= set(metrics)
                    assert all(np.isfinite(metrics[m]) for m in study.METRICS)
    # the control world of the remapping row has no near-duplicates: remapping changes nothing
    for seed in SEEDS:
        off = results["remapping"]["off"][seed]
        assert off["freshest"] == off["no remapping"]


def test_ideal_rankers_recall_matches_a_brute_force(results, setup) -> None:
    cfg, base = setup
    for seed in SEEDS:
        data = generate_world(dataclasses.replace(base, seed=seed))
        split = hydra.utils.instantiate(cfg.split)(data)
        corpus = training_window_corpus(split)
        test = split.test[split.test["event"] >= CLICK]
        train = split.train[split.train["event"] >= CLICK]
        excluded: dict[int, set[int]] = {}
        for user, pin in zip(train["user"], train["pin"], strict=True):
            excluded.setdefault(int(user), set()).add(int(pin))
        corpus_set = set(corpus.tolist())
        relevant: dict[int, set[int]] = {}
        for user, pin in zip(test["user"], test["pin"], strict=True):
            if int(pin) in corpus_set and int(pin) not in excluded.get(int(user), set()):
                relevant.setdefault(int(user), set()).add(int(pin))
        timestamp = int(split.test["timestamp"].min())
        recalls = []
        for user in sorted(relevant):
            scores = data.truth.true_score(np.full(len(corpus), user), corpus, timestamp)
            ranked = [
                p for p in corpus[np.argsort(-scores, kind="stable")] if p not in excluded.get(user, ())
            ]
            recalls.append(len(set(ranked[:100]) & relevant[user]) / len(relevant[user]))
        measured = results["own_taste"]["on"][seed]["true score"]["recall@100"]
        assert measured == pytest.approx(float(np.mean(recalls)), abs=1e-3)
        assert measured > results["own_taste"]["on"][seed]["features only"]["recall@100"]


def test_interval_is_the_t_interval_of_paired_gains() -> None:
    mean, low, high = study.interval([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert (low, high) == pytest.approx((2.0 - 2.4843, 2.0 + 2.4843), abs=1e-3)  # t(0.975, 2) * 1/sqrt(3)
    assert np.isnan(study.interval([1.0])[1])


def test_the_script_prints_one_line_per_row_and_metric() -> None:
    command = [sys.executable, str(REPO / "scripts" / "headroom.py")]
    command += ["--rows", "own_taste", "--seeds", "0", "--sessions", "1", *OVERRIDES]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    lines = result.stdout.splitlines()
    summary = [line for line in lines if line.startswith("| own_taste | `idiosyncrasy` 1 → 0 |")]
    assert [line.split(" | ")[2] for line in summary] == list(study.METRICS)
    variants = [
        line.split(" | ")[1] for line in lines if line.startswith("| own_taste | ") and "`" not in line
    ]
    assert variants == ["true score", "features only"]


def test_the_funnel_rewards_the_truths_top_100_over_a_features_only_top_100() -> None:
    """The issue's requirement on a tiny world: every simulated metric, by more than 3 standard errors
    of the per-user paired difference (the arms share the users and every random number)."""
    data = generate_world(WorldConfig(n_users=1500, n_pins=800, n_interests=12, n_days=30))
    split = global_temporal_split(data, test_days=7, val_days=3, train_days=21)
    corpus = training_window_corpus(split)
    population = build_simulation_task(split, corpus, users=10_000, seed=0)
    config = SimulationConfig(sessions_per_user=16)
    outcomes = {}
    for name, truth in (("truth", data.truth), ("features only", features_only(data.truth))):
        retrieved = top_k(truth, population, corpus)
        outcomes[name] = simulate_sessions(
            data.truth, population.user_ids, retrieved, population.timestamp, config
        )
    a, b = outcomes["truth"], outcomes["features only"]
    for metric, difference in (
        ("engaged sessions", (a.clicks > 0).astype(int) - (b.clicks > 0)),
        ("clicks", a.clicks - b.clicks),
        ("repins", a.repins - b.repins),
    ):
        per_user = difference.mean(axis=1)
        standard_error = per_user.std(ddof=1) / np.sqrt(len(per_user))
        assert per_user.mean() > 3 * standard_error, metric


def test_corpus_ceiling_is_the_share_of_relevant_pairs_in_the_pool(results) -> None:
    relevant = Csr.from_pairs(np.array([0, 0, 1, 2, 2, 2]), np.array([5, 7, 7, 1, 2, 9]), 3)
    pool = np.array([2, 7, 8])
    in_pool = [v in set(pool.tolist()) for v in [5, 7, 7, 1, 2, 9]]
    assert share_in_corpus(relevant, pool) == pytest.approx(sum(in_pool) / len(in_pool))
    for seed in SEEDS:
        on = results["remapping"]["on"][seed]
        # the unremapped corpus is the task's own: every relevant signature is in it
        assert on["no remapping"][CEILING] == pytest.approx(1.0)
        assert 0.0 < on["freshest"][CEILING] <= 1.0
