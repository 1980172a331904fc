"""Simulated online metrics against analytic rates, and the pairing properties of the hashed draws."""

from __future__ import annotations

import numpy as np
import pytest
from sim_truths import FixedTruth, ReversedTruth, TableTruth, TopOnlyTruth, candidates

from ebr.evaluation.simulation import SimulationConfig, simulate_online, simulate_sessions

KEYS = {"sim/engaged_sessions", "sim/clicks", "sim/repins", "sim/redundant", "sim/users"}


def _scored(n_pins: int = 1000) -> TableTruth:
    """Pin p has logit p / 250 - 4 (higher ids are better)."""
    return TableTruth(np.arange(n_pins) / 250 - 4, label_noise=1.0)


def test_rates_match_analytic_values() -> None:
    p_click, p_repin, shown, n_users, sessions = 0.2, 0.25, 10, 1000, 4
    config = SimulationConfig(sessions_per_user=sessions, shown_per_session=shown, candidates=30)
    rng = np.random.default_rng(0)
    result = simulate_online(
        FixedTruth(p_click, p_repin), np.arange(n_users), candidates(n_users, 30, rng), 0.0, config
    )
    n_sessions = n_users * sessions
    expected = {
        "sim/clicks": 1000 * shown * p_click,
        "sim/repins": 1000 * shown * p_click * p_repin,
        "sim/engaged_sessions": 1000 * (1 - (1 - p_click) ** shown),
    }
    # per-session standard deviations of the three counts, scaled to per-1,000 standard errors
    per_session_sd = {
        "sim/clicks": np.sqrt(shown * p_click * (1 - p_click)),
        "sim/repins": np.sqrt(shown * p_click * p_repin * (1 - p_click * p_repin)),
        "sim/engaged_sessions": np.sqrt((1 - (1 - p_click) ** shown) * (1 - p_click) ** shown),
    }
    assert set(result) == KEYS
    assert result["sim/users"] == n_users
    assert result["sim/redundant"] == 0.0
    for key, value in expected.items():
        standard_error = 1000 * per_session_sd[key] / np.sqrt(n_sessions)
        assert abs(result[key] - value) < 4 * standard_error, key


def test_identical_candidates_give_identical_results() -> None:
    rng = np.random.default_rng(1)
    pins = candidates(200, 50, rng)
    config = SimulationConfig(candidates=50, ranker_foresight=0.7)
    users = np.arange(200) * 7
    first = simulate_online(_scored(), users, pins, 0.0, config)
    second = simulate_online(_scored(), users.copy(), pins.copy(), 0.0, config)
    assert first == second
    # the order in which retrieval lists the candidates does not matter to the ranker
    shuffled = np.stack([rng.permutation(row) for row in pins])
    assert simulate_online(_scored(), users, shuffled, 0.0, config) == first
    other_seed = simulate_online(_scored(), users, pins, 0.0, SimulationConfig(candidates=50, seed=1))
    assert other_seed != first


def test_draws_depend_only_on_seed_user_session_pin() -> None:
    rng = np.random.default_rng(2)
    users = rng.choice(10_000, 300, replace=False)
    pins = candidates(300, 40, rng)
    config = SimulationConfig(candidates=40, sessions_per_user=3, ranker_foresight=1.0)
    truth = TableTruth(np.arange(1000) / 250 - 4, label_noise=3.0)
    base = simulate_sessions(truth, users, pins, 0.0, config)
    order = rng.permutation(300)
    permuted = simulate_sessions(truth, users[order], pins[order], 0.0, config)
    np.testing.assert_array_equal(permuted.clicks, base.clicks[order])
    np.testing.assert_array_equal(permuted.repins, base.repins[order])
    alone = simulate_sessions(truth, users[:1], pins[:1], 0.0, config)
    np.testing.assert_array_equal(alone.clicks, base.clicks[:1])
    assert base.clicks.sum() > 0
    assert base.repins.sum() > 0


def test_better_candidates_yield_more_engagement() -> None:
    rng = np.random.default_rng(3)
    config = SimulationConfig(candidates=20)
    users = np.arange(300)
    good = simulate_online(_scored(), users, candidates(300, 20, rng, high=100) + 100, 0.0, config)
    poor = simulate_online(_scored(), users, candidates(300, 20, rng, high=100), 0.0, config)
    for key in ("sim/engaged_sessions", "sim/clicks", "sim/repins"):
        assert good[key] > poor[key], key


def test_ranker_orders_by_the_true_score_plus_the_noise_it_foresees() -> None:
    rng = np.random.default_rng(4)
    users = np.arange(400)
    pins = np.stack([rng.permutation(20) for _ in users])  # pins 0..19, 15..19 always clicked
    blind = SimulationConfig(candidates=20, shown_per_session=5, ranker_foresight=0.0)
    result = simulate_online(TopOnlyTruth(15, label_noise=1e6), users, pins, 0.0, blind)
    assert result["sim/clicks"] == 5000.0
    assert result["sim/engaged_sessions"] == 1000.0
    # foreseeing all of a huge label noise, the ranker's order is random: 5 of 20 shown, 5 clicked
    seeing = SimulationConfig(candidates=20, shown_per_session=5, ranker_foresight=1.0)
    clicks = simulate_online(TopOnlyTruth(15, label_noise=1e6), users, pins, 0.0, seeing)["sim/clicks"]
    # hypergeometric sd per session: sqrt(5 * 0.25 * 0.75 * 15 / 19) ~ 0.86
    assert abs(clicks - 1250) < 4 * 1000 * 0.86 / np.sqrt(1600)
    # a world without label noise leaves the ranker nothing to foresee
    exact = simulate_online(TopOnlyTruth(15), users, pins, 0.0, seeing)
    assert exact["sim/clicks"] == 5000.0


def test_padding_is_never_shown() -> None:
    pins = np.full((50, 30), -1)
    pins[:, :3] = [[7, 8, 9]]
    config = SimulationConfig(candidates=30, shown_per_session=10)
    result = simulate_online(FixedTruth(1.0, 0.0), np.arange(50), pins, 0.0, config)
    assert result["sim/clicks"] == 3000.0
    assert result["sim/repins"] == 0.0
    # padding must not take display slots either, even where low pin ids score best
    pins = np.full((50, 30), -1)
    pins[:, 5:15] = np.arange(1, 11)
    result = simulate_online(ReversedTruth(1.0, 0.0), np.arange(50), pins, 0.0, config)
    assert result["sim/clicks"] == 10_000.0


def test_only_the_first_configured_candidates_are_used() -> None:
    pins = np.tile(np.arange(40), (20, 1))  # columns 10.. hold the always-clicked pins
    config = SimulationConfig(candidates=10, shown_per_session=5, ranker_foresight=0.0)
    assert simulate_online(TopOnlyTruth(10), np.arange(20), pins, 0.0, config)["sim/clicks"] == 0.0


def test_timestamps_per_user_reach_the_truth() -> None:
    class Clock(FixedTruth):
        """Clicked with probability 1 from time 100 on, never before."""

        def engagement_probabilities(self, users, pins, timestamp, noise=None):
            shape = np.broadcast_shapes(np.shape(users), np.shape(pins), np.shape(timestamp))
            return np.broadcast_to(np.asarray(timestamp) >= 100, shape).astype(float), np.zeros(shape)

    config = SimulationConfig(candidates=10, shown_per_session=2, sessions_per_user=1)
    pins = np.tile(np.arange(10), (4, 1))
    outcomes = simulate_sessions(Clock(0, 0), np.arange(4), pins, np.array([0, 150, 99, 100]), config)
    np.testing.assert_array_equal(outcomes.clicks[:, 0], [0, 2, 0, 2])
    with pytest.raises(ValueError, match="timestamp"):
        simulate_sessions(Clock(0, 0), np.arange(4), pins, np.zeros(3), config)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"sessions_per_user": 0}, "sessions_per_user"),
        ({"shown_per_session": 20, "candidates": 10}, "shown_per_session"),
        ({"ranker_foresight": -0.1}, "ranker_foresight"),
        ({"ranker_foresight": 1.5}, "ranker_foresight"),
        ({"redundant_duplicates": 1}, "redundant_duplicates"),
        ({"users": 0}, "users"),
        ({"seed": -3}, "seed"),
    ],
)
def test_config_errors_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"SimulationConfig.{field}"):
        SimulationConfig(**kwargs)


def test_too_few_candidate_columns_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"SimulationConfig\.candidates"):
        simulate_online(
            FixedTruth(0.1, 0.1), np.arange(2), np.zeros((2, 5), dtype=np.int64), 0.0, SimulationConfig()
        )
