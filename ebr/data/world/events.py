"""Event simulation: sessions, the logging policy's impressions, and clicks / repins drawn from the truth.

One vectorised step per day (the only Python loop). Each day draws from its own random sub-stream.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ebr.data.csr import Ragged, rows_of_values
from ebr.data.schema import CLICK, IMPRESSION, NO_INTEREST, REPIN, SECONDS_PER_DAY
from ebr.data.world.config import WorldConfig, stream
from ebr.data.world.entities import PinEntities, UserEntities
from ebr.data.world.sessions import source_taste_shift
from ebr.data.world.truth import SyntheticTruth

EVENT_DTYPES = {
    "user": np.int64,
    "pin": np.int64,
    "timestamp": np.int64,
    "event": np.int8,
    "interest": np.int32,
}


def _sample_from_rows(
    rows: Ragged, entry_weights: np.ndarray, row: np.ndarray, uniform: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one value per query from its row of `rows` (e.g. pins by interest), proportionally to weights.

    Args:
        rows: the candidates of each row.
        entry_weights: non-negative weight of each entry of `rows.values`.
        row: the row of each query (any shape).
        uniform: one U[0, 1) draw per query (the shape of `row`).

    Returns:
        (value, entry, ok): the drawn value, its index into `rows.values`, and False for queries
        whose row has no positive weight (their value and entry are placeholders).
    """
    cumulative = np.concatenate([[0.0], np.cumsum(entry_weights, dtype=np.float64)])
    base = cumulative[rows.offsets[row]]
    total = cumulative[rows.offsets[row + 1]] - base
    entry = np.searchsorted(cumulative[1:], base + uniform * total, side="right")
    # rounding can push a draw past the row: fall back to its last positive-weight entry
    positive_index = np.where(entry_weights > 0, np.arange(len(entry_weights)), -1)
    last_positive = np.maximum.accumulate(np.concatenate([[-1], positive_index]))[rows.offsets[row + 1]]
    entry = np.where(total > 0, np.minimum(entry, last_positive), 0)
    return rows.values[entry], entry, total > 0


def simulate_events(
    config: WorldConfig, users: UserEntities, pins: PinEntities, truth: SyntheticTruth
) -> pd.DataFrame:
    """Simulate every day of the horizon and return all events sorted by timestamp.

    Args:
        config: the world config.
        users: the users' attributes (activity and interest weights drive the sessions and the policy).
        pins: the pins' attributes (interest tags and cluster sizes drive the policy).
        truth: the true engagement model; clicks and repins are drawn from it plus label noise, and
            the policy's shortlist pick follows the users' own taste in it.

    Returns:
        Events in the canonical schema (user, pin, timestamp, event, interest) with canonical dtypes.
    """
    has_second = pins.second_interest >= 0
    pin_ids = np.arange(config.n_pins, dtype=np.int64)
    pins_by_interest = Ragged.from_rows(
        np.concatenate([pins.interest, pins.second_interest[has_second]]),
        np.concatenate([pin_ids, pin_ids[has_second]]),
        config.n_interests,
    )
    interests_by_user = Ragged(users.interest_offsets, users.interest_values)
    # a near-duplicate cluster gets one pin's exposure, split evenly among its members
    log_prior = config.policy_quality_weight * truth.pin_quality.astype(np.float64) - np.log(
        pins.cluster_size
    )
    days = [
        _simulate_day(config, day, users, truth, pins_by_interest, interests_by_user, log_prior)
        for day in range(config.n_days)
    ]
    columns = {
        name: np.concatenate([d[name] for d in days]).astype(dtype) for name, dtype in EVENT_DTYPES.items()
    }
    return pd.DataFrame(columns)


def _simulate_day(
    config: WorldConfig,
    day: int,
    users: UserEntities,
    truth: SyntheticTruth,
    pins_by_interest: Ragged,
    interests_by_user: Ragged,
    log_prior: np.ndarray,
) -> dict[str, np.ndarray]:
    rng = stream(config.seed, "events", day)
    day_start = day * SECONDS_PER_DAY
    # the policy serves pins created before the day starts, weighted by their popularity at midday
    exists = truth.pin_created_at <= day_start
    existing = np.flatnonzero(exists)
    pin_log_weight = log_prior.copy()
    if config.trend_strength > 0:
        pin_log_weight += config.trend_strength * truth.log_trend(
            np.arange(config.n_pins), day_start + SECONDS_PER_DAY // 2
        )
    pin_weight = np.where(exists, np.exp(pin_log_weight - pin_log_weight[exists].max(initial=0.0)), 0.0)

    sessions = rng.poisson(users.activity)
    per_session = config.impressions_per_session
    gap = config.impression_gap_seconds
    session_user = rows_of_values(sessions)
    start = rng.integers(0, SECONDS_PER_DAY - per_session * gap + 1, size=len(session_user))
    n = len(session_user) * per_session
    if len(existing) == 0:
        n = 0  # nothing to show yet
    user = np.repeat(session_user, per_session)[:n]
    timestamp = (
        day_start + (np.repeat(start, per_session) + np.tile(np.arange(per_session) * gap, len(start)))[:n]
    )

    # logging policy: source interest from the user's weights, then a shortlist of pins tagged with it
    # (by quality and trend), of which a past ranker that knew part of the user's own taste picks one
    # with interest drift, the users' weights of the day (ebr.data.world.drift)
    weights = truth.current_entry_weights(day_start) if truth.interest_drift else users.interest_weights
    source, source_entry, _ = _sample_from_rows(interests_by_user, weights, user, rng.random(n))
    shortlist = config.policy_shortlist
    listed, _, ok = _sample_from_rows(
        pins_by_interest,
        pin_weight[pins_by_interest.values],
        np.repeat(source, shortlist),
        rng.random(n * shortlist),
    )
    listed, ok = listed.reshape(n, shortlist), ok.reshape(n, shortlist)[:, 0]
    pick = rng.gumbel(size=(n, shortlist))
    if config.policy_personalization > 0:
        pick += config.policy_personalization * _own_taste_logit(truth, user, source_entry, listed)
    pin = listed[np.arange(n), np.argmax(pick, axis=1)]
    explore = (rng.random(n) < config.exploration_rate) | ~ok
    random_pin = existing[rng.integers(0, max(len(existing), 1), size=n)]
    pin = np.where(explore, random_pin, pin)
    interest = np.where(explore, NO_INTEREST, source)

    # the same noise model as every consumer of the truth: logit + label_noise * N(0, 1)
    shift = source_taste_shift(config, day, truth, user, pin, np.where(explore, -1, source))
    p_click, p_repin = truth.engagement_probabilities(user, pin, timestamp, rng.standard_normal(n), shift)
    click = rng.random(n) < p_click
    repin = click & (rng.random(n) < p_repin)
    # a click follows its impression, a repin its click, within the impression gap
    click_time = timestamp + rng.integers(0, gap // 2, size=n)
    repin_time = click_time + rng.integers(0, gap // 2, size=n)

    parts = [
        (np.ones(n, bool), timestamp, IMPRESSION),
        (click, click_time, CLICK),
        (repin, repin_time, REPIN),
    ]
    out = {
        "user": np.concatenate([user[mask] for mask, _, _ in parts]),
        "pin": np.concatenate([pin[mask] for mask, _, _ in parts]),
        "timestamp": np.concatenate([times[mask] for mask, times, _ in parts]),
        "event": np.concatenate([np.full(int(mask.sum()), code, np.int8) for mask, _, code in parts]),
        "interest": np.concatenate([interest[mask] for mask, _, _ in parts]),
    }
    # stable: at equal seconds an impression precedes its click and a click its repin
    order = np.argsort(out["timestamp"], kind="stable")
    return {name: values[order] for name, values in out.items()}


def _own_taste_logit(
    truth: SyntheticTruth, users: np.ndarray, entries: np.ndarray, pins: np.ndarray
) -> np.ndarray:
    """affinity_scale * <own taste of each user for the source interest, z_p> for (n, m) pins.

    Args:
        truth: the world's truth.
        users: (n,) user ids.
        entries: (n,) the users' interest entries the pins were drawn for.
        pins: (n, m) shortlisted pin ids.
    """
    own = truth.user_own_taste[users] + truth.user_interest_taste[entries]
    return truth.affinity_scale * np.einsum("nl,nml->nm", own, truth.pin_vectors[pins])
