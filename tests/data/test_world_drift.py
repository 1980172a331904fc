"""Interest drift (`interest_drift`, ebr.data.world.drift): off it changes nothing; on, the users' focus
follows its schedule, the truth's score uses the current weights (both scoring paths, against a hand
computation) and the logging policy draws from them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from world_helpers import assert_worlds_equal, flatten, tiny

from ebr.data.loaders.synthetic import load_world
from ebr.data.schema import IMPRESSION, NO_INTEREST, SECONDS_PER_DAY
from ebr.data.world import generate_world
from ebr.data.world.drift import draw_focus
from ebr.data.world.entities import draw_users

DRIFT = 0.9


@pytest.fixture(scope="module")
def drifting():
    return generate_world(tiny(interest_drift=DRIFT, interest_drift_days=3.0))


def test_knob_off_draws_nothing_and_ignores_the_period() -> None:
    # the focus stream is never drawn at 0: the period cannot change any array of the world
    a = generate_world(tiny())
    b = generate_world(tiny(interest_drift_days=2.0))
    fa, fb = flatten(a), flatten(b)
    assert fa.pop("meta")[0::2] == fb.pop("meta")[0::2]  # the source names the config's hash
    assert fa.keys() == fb.keys()
    for name, value in fa.items():
        np.testing.assert_array_equal(value, fb[name], err_msg=name)
    assert a.truth.user_focus.shape == (600, 0)
    assert a.truth.current_entry_weights(5 * SECONDS_PER_DAY) is a.truth.user_interest_weights


def test_drift_leaves_users_pins_and_taste_alone(drifting) -> None:
    static = generate_world(tiny())
    for name in ("user_vectors", "pin_vectors", "user_interest_weights", "pin_quality"):
        np.testing.assert_array_equal(getattr(static.truth, name), getattr(drifting.truth, name))


def test_focus_is_one_of_the_users_interests_and_switches_at_the_period(drifting) -> None:
    truth = drifting.truth
    focus = truth.user_focus
    assert focus.shape == (600, 10)
    offsets = truth.user_interest_offsets
    assert np.all((focus >= offsets[:-1, None]) & (focus < offsets[1:, None]))
    # users with several interests change focus at a rate of about 1 - exp(-1/3) per day
    several = np.diff(offsets) > 1
    changed = (focus[several, 1:] != focus[several, :-1]).mean()
    assert 0.1 < changed < 0.3
    # a user of a single interest is always focused on it
    single = np.flatnonzero(~several)
    np.testing.assert_array_equal(focus[single], np.repeat(offsets[single, None], 10, axis=1))


def test_current_weights_match_a_hand_computation(drifting) -> None:
    truth = drifting.truth
    t = 4 * SECONDS_PER_DAY + 100
    weights = truth.current_entry_weights(t)
    for user in range(0, 600, 37):
        lo, hi = truth.user_interest_offsets[user], truth.user_interest_offsets[user + 1]
        want = (1 - DRIFT) * truth.user_interest_weights[lo:hi].astype(np.float64)
        want[truth.user_focus[user, 4] - lo] += DRIFT
        np.testing.assert_allclose(weights[lo:hi], want, rtol=1e-6)
        assert weights[lo:hi].sum() == pytest.approx(1.0, abs=1e-5)


def test_true_score_uses_the_current_weights_in_both_paths(drifting) -> None:
    truth = drifting.truth
    users, pins = np.arange(0, 600, 7), np.arange(0, 300, 3)
    for day in (0, 4, 9, 12):  # 12: after the horizon, the last day's focus
        t = day * SECONDS_PER_DAY + 500
        matrix = truth.score_matrix(users, pins, t)
        np.testing.assert_allclose(matrix, truth.true_score(users[:, None], pins[None, :], t), atol=1e-4)
    # the interest-match term by hand: the current weight of the pin's tag the user weighs most now
    t = 6 * SECONDS_PER_DAY
    weights = truth.current_entry_weights(t)
    static = truth.score_matrix(users, pins, t) - truth.interest_match_weight * _match(
        truth, weights, users, pins
    )
    baseline = _without_match(truth, users, pins, t)
    exists = truth.pin_created_at[pins] <= t  # an uncreated pin's score is a constant
    assert exists.sum() > 50
    np.testing.assert_allclose(static[:, exists], baseline[:, exists], atol=1e-4)


def _match(truth, weights: np.ndarray, users: np.ndarray, pins: np.ndarray) -> np.ndarray:
    out = np.zeros((len(users), len(pins)))
    for i, user in enumerate(users):
        lo, hi = truth.user_interest_offsets[user], truth.user_interest_offsets[user + 1]
        mine = dict(zip(truth.user_interest_values[lo:hi].tolist(), weights[lo:hi].tolist(), strict=True))
        for j, pin in enumerate(pins):
            out[i, j] = max(mine.get(int(tag), 0.0) for tag in truth.pin_interests[pin])
    return out


def _without_match(truth, users: np.ndarray, pins: np.ndarray, t: int) -> np.ndarray:
    """The score with interest_match_weight 0 (taste, quality, trend: untouched by the drift)."""
    return dataclasses.replace(truth, interest_match_weight=0.0).score_matrix(users, pins, t)


def test_policy_draws_source_interests_from_the_current_weights(drifting) -> None:
    truth = drifting.truth
    shown = drifting.events[
        (drifting.events["event"] == IMPRESSION) & (drifting.events["interest"] != NO_INTEREST)
    ]
    users = shown["user"].to_numpy()
    day = shown["timestamp"].to_numpy() // SECONDS_PER_DAY
    focus = truth.user_interest_values[truth.user_focus[users, day]]
    # P(source = focus) = DRIFT + (1 - DRIFT) * static weight of the focus >= DRIFT
    share = np.mean(shown["interest"].to_numpy() == focus)
    expected = np.mean(DRIFT + (1 - DRIFT) * truth.user_interest_weights[truth.user_focus[users, day]])
    assert share == pytest.approx(expected, abs=0.01)
    # without drift the same users' impressions follow the static weights: far less concentrated
    static = generate_world(tiny())
    shown0 = static.events[
        (static.events["event"] == IMPRESSION) & (static.events["interest"] != NO_INTEREST)
    ]
    users0 = shown0["user"].to_numpy()
    day0 = shown0["timestamp"].to_numpy() // SECONDS_PER_DAY
    assert np.mean(shown0["interest"].to_numpy() == focus_of(truth, users0, day0)) < share - 0.2


def focus_of(truth, users: np.ndarray, day: np.ndarray) -> np.ndarray:
    return truth.user_interest_values[truth.user_focus[users, day]]


def test_focus_draws_follow_the_profile_weights() -> None:
    config = tiny(interest_drift=1.0, interest_drift_days=1e-3)  # a new focus drawn every day
    users = draw_users(config)
    focus = draw_focus(config, users)
    share = np.bincount(focus.ravel(), minlength=len(users.interest_values)) / focus.shape[1]
    assert share.sum() == pytest.approx(config.n_users)
    # per entry, the share of days focused on it estimates its weight (10 days per user); averaged
    # over the entries of each weight decile the noise is ~0.01
    weights = users.interest_weights.astype(np.float64)
    deciles = np.minimum((np.argsort(np.argsort(weights)) * 10) // len(weights), 9)
    for d in range(10):
        assert share[deciles == d].mean() == pytest.approx(weights[deciles == d].mean(), abs=0.04)


def test_cache_round_trip_keeps_the_focus(drifting, tmp_path) -> None:
    config = tiny(interest_drift=DRIFT, interest_drift_days=3.0)
    load_world(config, tmp_path)
    cached = load_world(config, tmp_path)  # read back from the cache
    assert_worlds_equal(cached, drifting)
    assert cached.truth.interest_drift == DRIFT
