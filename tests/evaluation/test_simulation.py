"""Simulated online metrics against analytic rates, and the pairing properties of the hashed draws."""

from __future__ import annotations

import numpy as np
import pytest

from ebr.evaluation.simulation import SimulationConfig, simulate_online, simulate_sessions


class FixedTruth:
    """Every pin has the same click and repin probability; the true score is the pin id."""

    def __init__(self, p_click: float, p_repin: float) -> None:
        self.p_click, self.p_repin = p_click, p_repin

    def engagement_probabilities(self, users, pins, timestamp):
        shape = np.broadcast_shapes(np.shape(users), np.shape(pins))
        return np.full(shape, self.p_click), np.full(shape, self.p_repin)

    def true_score(self, users, pins, timestamp):
        return np.broadcast_to(
            np.asarray(pins, dtype=np.float64), np.broadcast_shapes(np.shape(users), np.shape(pins))
        )


class ReversedTruth(FixedTruth):
    """Fixed probabilities; the lower the pin id, the higher the true score."""

    def true_score(self, users, pins, timestamp):
        return -super().true_score(users, pins, timestamp)


class ScoredTruth(FixedTruth):
    """Pin p has true score p / 20 - 6 and p_click = sigmoid(score); every click is repinned with 0.5."""

    def __init__(self) -> None:
        super().__init__(0.0, 0.5)

    def engagement_probabilities(self, users, pins, timestamp):
        score = self.true_score(users, pins, timestamp)
        return 1 / (1 + np.exp(-score)), np.full(score.shape, self.p_repin)

    def true_score(self, users, pins, timestamp):
        return super().true_score(users, pins, timestamp) / 20 - 6


class TopOnlyTruth(FixedTruth):
    """Pins with id >= threshold are always clicked, others never; the true score is the pin id."""

    def __init__(self, threshold: int) -> None:
        super().__init__(0.0, 0.0)
        self.threshold = threshold

    def engagement_probabilities(self, users, pins, timestamp):
        pins = np.broadcast_to(pins, np.broadcast_shapes(np.shape(users), np.shape(pins)))
        return (pins >= self.threshold).astype(np.float64), np.zeros(pins.shape)


def _candidates(n_users: int, n_candidates: int, rng: np.random.Generator, high: int = 1000) -> np.ndarray:
    return np.stack([rng.choice(high, n_candidates, replace=False) for _ in range(n_users)])


def test_rates_match_analytic_values() -> None:
    p_click, p_repin, shown, n_users, sessions = 0.2, 0.25, 10, 1000, 4
    config = SimulationConfig(sessions_per_user=sessions, shown_per_session=shown, candidates=30)
    rng = np.random.default_rng(0)
    result = simulate_online(
        FixedTruth(p_click, p_repin), np.arange(n_users), _candidates(n_users, 30, rng), 0.0, config
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
    assert set(result) == set(expected)
    for key, value in expected.items():
        standard_error = 1000 * per_session_sd[key] / np.sqrt(n_sessions)
        assert abs(result[key] - value) < 4 * standard_error, key


def test_identical_candidates_give_identical_results() -> None:
    rng = np.random.default_rng(1)
    candidates = _candidates(200, 50, rng)
    config = SimulationConfig(candidates=50, ranker_noise=2.0)
    users = np.arange(200) * 7
    first = simulate_online(ScoredTruth(), users, candidates, 0.0, config)
    second = simulate_online(ScoredTruth(), users.copy(), candidates.copy(), 0.0, config)
    assert first == second
    # the order in which retrieval lists the candidates does not matter to the ranker
    shuffled = np.stack([rng.permutation(row) for row in candidates])
    assert simulate_online(ScoredTruth(), users, shuffled, 0.0, config) == first
    other_seed = simulate_online(
        ScoredTruth(), users, candidates, 0.0, SimulationConfig(candidates=50, seed=1)
    )
    assert other_seed != first


def test_draws_depend_only_on_seed_user_session_pin() -> None:
    rng = np.random.default_rng(2)
    users = rng.choice(10_000, 300, replace=False)
    candidates = _candidates(300, 40, rng)
    config = SimulationConfig(candidates=40, sessions_per_user=3, ranker_noise=3.0)
    base = simulate_sessions(ScoredTruth(), users, candidates, 0.0, config)
    order = rng.permutation(300)
    permuted = simulate_sessions(ScoredTruth(), users[order], candidates[order], 0.0, config)
    np.testing.assert_array_equal(permuted.clicks, base.clicks[order])
    np.testing.assert_array_equal(permuted.repins, base.repins[order])
    alone = simulate_sessions(ScoredTruth(), users[:1], candidates[:1], 0.0, config)
    np.testing.assert_array_equal(alone.clicks, base.clicks[:1])
    assert base.clicks.sum() > 0
    assert base.repins.sum() > 0


def test_better_candidates_yield_more_engagement() -> None:
    rng = np.random.default_rng(3)
    config = SimulationConfig(candidates=20)
    users = np.arange(300)
    good = simulate_online(ScoredTruth(), users, _candidates(300, 20, rng, high=100) + 100, 0.0, config)
    poor = simulate_online(ScoredTruth(), users, _candidates(300, 20, rng, high=100), 0.0, config)
    for key in good:
        assert good[key] > poor[key], key


def test_ranker_shows_the_top_true_scores_up_to_its_noise() -> None:
    rng = np.random.default_rng(4)
    users = np.arange(400)
    candidates = np.stack([rng.permutation(20) for _ in users])  # pins 0..19, 15..19 always clicked
    exact = SimulationConfig(candidates=20, shown_per_session=5, ranker_noise=0.0)
    result = simulate_online(TopOnlyTruth(15), users, candidates, 0.0, exact)
    assert result["sim/clicks"] == 5000.0
    assert result["sim/engaged_sessions"] == 1000.0
    # a ranker drowned in noise shows 5 random pins of 20, 5 of which are clicked: 1250 per 1,000
    noisy = SimulationConfig(candidates=20, shown_per_session=5, ranker_noise=1e6)
    clicks = simulate_online(TopOnlyTruth(15), users, candidates, 0.0, noisy)["sim/clicks"]
    # hypergeometric sd per session: sqrt(5 * 0.25 * 0.75 * 15 / 19) ~ 0.86
    assert abs(clicks - 1250) < 4 * 1000 * 0.86 / np.sqrt(1600)


def test_padding_is_never_shown() -> None:
    candidates = np.full((50, 30), -1)
    candidates[:, :3] = [[7, 8, 9]]
    config = SimulationConfig(candidates=30, shown_per_session=10)
    result = simulate_online(FixedTruth(1.0, 0.0), np.arange(50), candidates, 0.0, config)
    assert result["sim/clicks"] == 3000.0
    assert result["sim/repins"] == 0.0
    # padding must not take display slots either, even where low pin ids score best
    candidates = np.full((50, 30), -1)
    candidates[:, 5:15] = np.arange(1, 11)
    result = simulate_online(ReversedTruth(1.0, 0.0), np.arange(50), candidates, 0.0, config)
    assert result["sim/clicks"] == 10_000.0


def test_only_the_first_configured_candidates_are_used() -> None:
    candidates = np.tile(np.arange(40), (20, 1))  # columns 10.. hold the always-clicked pins
    config = SimulationConfig(candidates=10, shown_per_session=5, ranker_noise=0.0)
    assert simulate_online(TopOnlyTruth(10), np.arange(20), candidates, 0.0, config)["sim/clicks"] == 0.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"sessions_per_user": 0}, "sessions_per_user"),
        ({"shown_per_session": 20, "candidates": 10}, "shown_per_session"),
        ({"ranker_noise": -1.0}, "ranker_noise"),
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
