"""The simulated population (`build_simulation_task`) and `evaluate_online`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sim_truths import TableTruth

from ebr.data.schema import CLICK, IMPRESSION, REPIN, Split
from ebr.evaluation.protocol import evaluate_online
from ebr.evaluation.simulation import SimulationConfig, simulate_online
from ebr.evaluation.task import build_eval_task, build_simulation_task


def _split(seed: int = 0, n_users: int = 300, n_pins: int = 120) -> Split:
    rng = np.random.default_rng(seed)

    def window(n: int, start: int) -> pd.DataFrame:
        frame = pd.DataFrame(
            {
                "user": rng.integers(0, n_users, n),
                "pin": rng.zipf(1.3, n) % n_pins,
                "timestamp": start + np.arange(n),
                "event": rng.choice([IMPRESSION, CLICK, REPIN], n),
                "interest": -1,
            }
        )
        return frame

    train, val, test = window(3000, 0), window(300, 5000), window(600, 10_000)
    return Split(pretrain=train.iloc[:0], train=train, val=val, test=test, reference_time=10_000)


def _rows(csr) -> list[list[int]]:
    return [csr.values[a:b].tolist() for a, b in zip(csr.offsets[:-1], csr.offsets[1:], strict=True)]


def test_population_is_every_active_user_whatever_the_corpus_and_exclusion() -> None:
    split = _split()
    engaged = split.test[split.test["event"] >= CLICK]
    active = np.unique(engaged["user"])
    arms = [
        build_simulation_task(split, corpus, users=10_000, exclude_train=exclude)
        for corpus in (np.arange(120), np.arange(0, 120, 7))
        for exclude in (True, False)
    ]
    for task in arms:
        np.testing.assert_array_equal(task.user_ids, active)
        assert task.timestamp == 10_000
        assert task.cold["window_users"] == task.cold["sampled_users"] == len(active)
    # the users the offline task drops are kept, with nothing relevant, and counted
    small = arms[2]
    offline = build_eval_task(split, small.corpus)
    assert small.cold["nothing_relevant"] == len(active) - len(offline.user_ids) > 0
    common = np.searchsorted(small.user_ids, offline.user_ids)
    relevant, exclude = _rows(small.relevant), _rows(small.exclude)
    assert [relevant[i] for i in common] == _rows(offline.relevant)
    assert [exclude[i] for i in common] == _rows(offline.exclude)
    empty = np.setdiff1d(np.arange(len(active)), common)
    assert all(relevant[i] == [] for i in empty)


def test_population_sample_is_seeded_and_nested() -> None:
    split = _split(1)
    everyone = build_simulation_task(split, np.arange(120), users=10_000)
    small = build_simulation_task(split, np.arange(120), users=40)
    large = build_simulation_task(split, np.arange(120), users=100)
    assert len(small.user_ids) == 40
    assert len(large.user_ids) == 100
    assert np.all(np.diff(small.user_ids) > 0)
    assert set(small.user_ids) <= set(large.user_ids) <= set(everyone.user_ids)
    other_seed = build_simulation_task(split, np.arange(120), users=40, seed=1)
    assert set(other_seed.user_ids) != set(small.user_ids)
    # the sample does not depend on the corpus (the arm)
    np.testing.assert_array_equal(
        build_simulation_task(split, np.arange(0, 120, 3), users=40).user_ids, small.user_ids
    )
    assert small.cold["sampled_users"] == 40
    assert small.cold["window_users"] == len(everyone.user_ids)


def test_population_of_the_validation_window() -> None:
    split = _split(2)
    task = build_simulation_task(split, np.arange(120), users=10_000, window="val")
    engaged = split.val[split.val["event"] >= CLICK]
    np.testing.assert_array_equal(task.user_ids, np.unique(engaged["user"]))
    assert task.timestamp == int(split.val["timestamp"].min())


def test_population_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="users must be a positive integer"):
        build_simulation_task(_split(), np.arange(120), users=0)
    with pytest.raises(ValueError, match="window must be one of"):
        build_simulation_task(_split(), np.arange(120), users=5, window="future")


def test_evaluate_online_scores_the_population_and_prefixes_keys() -> None:
    split = _split(3)
    population = build_simulation_task(split, np.arange(120), users=10_000)
    rng = np.random.default_rng(0)
    retrieved = np.stack([rng.choice(120, 20, replace=False) for _ in population.user_ids])
    truth = TableTruth(np.linspace(-5, 0, 120))
    config = SimulationConfig(candidates=20, shown_per_session=5)
    metrics = evaluate_online(truth, population, retrieved, config, prefix="popularity")
    expected = simulate_online(truth, population.user_ids, retrieved, 10_000.0, config)
    assert metrics == {f"popularity/{k}": v for k, v in expected.items()}
    assert metrics["popularity/sim/users"] == len(population.user_ids)
    with pytest.raises(ValueError, match="rows"):
        evaluate_online(truth, population, retrieved[1:], config)
