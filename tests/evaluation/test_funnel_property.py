"""The funnel property of the simulator, its redundancy of near-duplicates and its noise model.

Property (ebr/evaluation/simulation.py): for candidate sets with at most one pin per near-duplicate
group, a session's expected clicks, repins and engagement never decrease when a candidate's true
score rises or a candidate is added. The Monte Carlo checks below compare arms on the same users
and sessions (common random numbers), with the per-session paired differences' standard error.
"""

from __future__ import annotations

import numpy as np
import pytest
from sim_truths import FixedTruth, TableTruth

from ebr.data.schema import CLICK, IMPRESSION, REPIN
from ebr.data.world import WorldConfig, generate_world
from ebr.evaluation.simulation import SimulationConfig, simulate_online, simulate_sessions

COUNTS = ("clicks", "repins", "engaged")


def _paired(truth, users: np.ndarray, first: np.ndarray, second: np.ndarray, config) -> dict:
    """Per count, (mean, standard error) of the per-session difference first - second."""
    a = simulate_sessions(truth, users, first, 0.0, config)
    b = simulate_sessions(truth, users, second, 0.0, config)
    differences = {
        "clicks": a.clicks - b.clicks,
        "repins": a.repins - b.repins,
        "engaged": (a.clicks > 0).astype(int) - (b.clicks > 0),
    }
    return {
        name: (float(d.mean()), float(d.std(ddof=1) / np.sqrt(d.size)) + 1e-12)
        for name, d in differences.items()
    }


@pytest.mark.parametrize("foresight", [0.0, 0.5, 1.0])
def test_the_truths_top_k_beats_random_k_subsets(foresight: float) -> None:
    rng = np.random.default_rng(0)
    n_users, n_pins = 400, 2000
    truth = TableTruth(-4.0 + 1.2 * rng.standard_normal((n_users, n_pins)), label_noise=1.0)
    users = np.arange(n_users)
    top = np.argsort(-truth.scores, axis=1)[:, :100]
    config = SimulationConfig(ranker_foresight=foresight, sessions_per_user=8)
    for _ in range(3):
        subset = np.stack([rng.choice(n_pins, 100, replace=False) for _ in users])
        for name, (mean, se) in _paired(truth, users, top, subset, config).items():
            assert mean > 4 * se, name


def _old_funnel_clicks(scores: np.ndarray, rng: np.random.Generator, sessions: int = 20_000) -> float:
    """Expected clicks per 1,000 sessions of a funnel whose ranker noise is independent of the user.

    The ranker shows the top 10 of score + N(0, 1); a shown pin is clicked with probability
    E sigmoid(score + N(0, 1)) (the label noise, unseen by that ranker).
    """
    total = 0.0
    for _ in range(sessions // 1000):
        ranked = scores[None, :] + rng.standard_normal((1000, len(scores)))
        shown = scores[np.argsort(-ranked, axis=1)[:, :10]]
        total += (1 / (1 + np.exp(-(shown + rng.standard_normal(shown.shape))))).sum()
    return 1000 * total / sessions


@pytest.mark.parametrize("foresight", [0.0, 0.5, 1.0])
def test_a_set_worse_at_every_rank_never_wins(foresight: float) -> None:
    # A: 10 good pins and 90 fair ones; B: 10 pins a little worse than A's good ones, 90 hopeless.
    # B is worse than A at every rank, yet a ranker whose noise is independent of the user is fooled
    # by A's many fair pins and shows B's top 10 more reliably.
    scores = np.r_[np.full(10, -3.0), np.full(90, -4.0), np.full(10, -3.05), np.full(90, -11.0)]
    truth = TableTruth(scores, label_noise=1.0)
    n_users = 3000
    better = np.tile(np.arange(100), (n_users, 1))
    worse = np.tile(np.arange(100, 200), (n_users, 1))
    rng = np.random.default_rng(1)
    old_better, old_worse = _old_funnel_clicks(scores[:100], rng), _old_funnel_clicks(scores[100:], rng)
    assert old_worse - old_better > 50  # the example does fool an independent-noise ranker
    config = SimulationConfig(ranker_foresight=foresight, sessions_per_user=8)
    for name, (mean, se) in _paired(truth, np.arange(n_users), better, worse, config).items():
        assert mean > -3 * se, name
    clicks_mean, clicks_se = _paired(truth, np.arange(n_users), better, worse, config)["clicks"]
    assert clicks_mean > 3 * clicks_se


@pytest.mark.parametrize(("quantile", "gains"), [(0.05, False), (0.5, False), (0.999, True)])
def test_adding_a_candidate_never_loses(quantile: float, gains: bool) -> None:
    rng = np.random.default_rng(2)
    n_users, n_pins = 2000, 400
    truth = TableTruth(-4.0 + 1.5 * rng.standard_normal(n_pins), label_noise=1.0)
    order = np.argsort(truth.scores)
    added = int(order[int(quantile * (n_pins - 1))])
    others = np.setdiff1d(np.arange(n_pins), [added])
    base = np.stack([np.r_[rng.choice(others, 99, replace=False), -1] for _ in range(n_users)])
    extended = base.copy()
    extended[:, -1] = added
    config = SimulationConfig(ranker_foresight=0.5, sessions_per_user=8)
    for name, (mean, se) in _paired(truth, np.arange(n_users), extended, base, config).items():
        assert mean > -3 * se, name
        if gains:
            assert mean > 4 * se, name


class _OnlyPinTwoClicks(FixedTruth):
    """Pin 2 is always clicked, every other pin never; the ranker's order is the pin id, descending."""

    def engagement_probabilities(self, users, pins, timestamp, noise=None):
        pins = np.broadcast_to(pins, np.broadcast_shapes(np.shape(users), np.shape(pins)))
        return (pins == 2).astype(float), np.zeros(pins.shape)


def test_a_near_duplicate_of_a_shown_pin_is_redundant() -> None:
    users, pins = np.arange(30), np.tile(np.arange(10), (30, 1))
    group_of_three = {0: 0, 1: 0, 2: 0}
    config = SimulationConfig(candidates=10, shown_per_session=10)
    on = simulate_online(FixedTruth(1.0, 0.0, group_of_three), users, pins, 0.0, config)
    assert (on["sim/clicks"], on["sim/redundant"]) == pytest.approx((8000.0, 2000.0))
    off_config = SimulationConfig(candidates=10, shown_per_session=10, redundant_duplicates=False)
    off = simulate_online(FixedTruth(1.0, 0.0, group_of_three), users, pins, 0.0, off_config)
    assert (off["sim/clicks"], off["sim/redundant"]) == pytest.approx((10_000.0, 0.0))
    # the first shown member (pin 2, the highest ranked) is the one that can be engaged
    for groups in (group_of_three, {2: 1}):
        clicks = simulate_online(_OnlyPinTwoClicks(0, 0, groups), users, pins, 0.0, config)["sim/clicks"]
        assert clicks == pytest.approx(1000.0)
    # a duplicate that pushes a distinct pin out of the shown slots costs engagement
    with_duplicate = np.tile(np.r_[np.arange(9), 20], (30, 1))
    duplicate_of_eight = FixedTruth(1.0, 0.0, {20: 8})
    clicks = simulate_online(duplicate_of_eight, users, with_duplicate, 0.0, config)["sim/clicks"]
    assert clicks == pytest.approx(9000.0)


def test_clicks_and_repins_use_the_generators_noise_model() -> None:
    world = generate_world(WorldConfig(n_users=800, n_pins=300, n_interests=8, n_days=6, label_noise=1.5))
    events = world.events
    impressions = events[events["event"] == IMPRESSION]
    users = impressions["user"].to_numpy()
    pins = impressions["pin"].to_numpy()[:, None]
    times = impressions["timestamp"].to_numpy()
    config = SimulationConfig(
        sessions_per_user=1, shown_per_session=1, candidates=1, redundant_duplicates=False
    )
    simulated = simulate_sessions(world.truth, users, pins, times, config)
    n = len(users)
    logged_clicks = int((events["event"] == CLICK).sum())
    logged_repins = int((events["event"] == REPIN).sum())
    # repeated (user, pin) impressions share their hashed draws: the standard error of the simulated
    # rate is that of clusters of identical draws, sqrt(sum n_c^2 p (1 - p)) / n
    _, sizes = np.unique(users * world.truth.n_pins + pins[:, 0], return_counts=True)
    pairs = ((simulated.clicks.sum(), logged_clicks), (simulated.repins.sum(), logged_repins))
    for simulated_count, logged in pairs:
        p = logged / n
        se = np.sqrt(np.sum(sizes**2) * p * (1 - p)) / n + np.sqrt(p * (1 - p) / n)
        assert abs(simulated_count / n - p) < 4 * se, (simulated_count, logged)
    # the expected-score model without the noise is far off, so the check above can fail
    p_click, _ = world.truth.engagement_probabilities(users, pins[:, 0], times)
    assert logged_clicks / n - p_click.mean() > 10 * np.sqrt(np.sum(sizes**2) * p * (1 - p)) / n
