"""Simulated online metrics: show retrieved candidates to the synthetic world's users and count engagement.

Funnel per user and session: a ranker orders the retrieved candidates by the world's true score
plus Gaussian noise (standing in for the production ranking model) and shows the top few; each
shown pin is clicked with the world's p_click and, once clicked, repinned with its p_repin.

Every random number is a hash of (seed, user, session, pin, stream) rather than a draw from a
stateful generator, so two arms of an A/B comparison that put the same pin in front of the same
user in the same session see the same noise and the same coin flips: the comparison is paired
and its variance comes only from the pins the arms disagree on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ebr.data.schema import GroundTruth

# independent hash streams per random quantity
_NOISE_A, _NOISE_B, _CLICK, _REPIN = 1, 2, 3, 4
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_USER_CHUNK = 2048


@dataclass(frozen=True)
class SimulationConfig:
    """The simulated serving funnel.

    Args:
        sessions_per_user: sessions simulated per evaluated user.
        shown_per_session: pins shown per session (the top of the ranker's order).
        ranker_noise: standard deviation of the Gaussian noise added to the true score by the ranker
            (0 = a perfect ranker).
        candidates: retrieved candidates per user handed to the ranker (the first columns of the
            retrieved matrix).
        seed: seed of every random draw.
    """

    sessions_per_user: int = 4
    shown_per_session: int = 10
    ranker_noise: float = 1.0
    candidates: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("sessions_per_user", "shown_per_session", "candidates"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SimulationConfig.{name} must be a positive integer, got {value!r}")
        if self.shown_per_session > self.candidates:
            raise ValueError(
                f"SimulationConfig.shown_per_session ({self.shown_per_session}) must not exceed"
                f" SimulationConfig.candidates ({self.candidates})"
            )
        if not np.isfinite(self.ranker_noise) or self.ranker_noise < 0:
            raise ValueError(
                f"SimulationConfig.ranker_noise must be finite and >= 0, got {self.ranker_noise!r}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"SimulationConfig.seed must be a non-negative integer, got {self.seed!r}")


@dataclass(frozen=True)
class SessionOutcomes:
    """Per user and session engagement counts of a simulation.

    Args:
        clicks: (M, sessions_per_user) clicks per session.
        repins: (M, sessions_per_user) repins per session.
    """

    clicks: np.ndarray
    repins: np.ndarray


def simulate_sessions(
    truth: GroundTruth,
    user_ids: np.ndarray,
    candidates: np.ndarray,
    timestamp: float,
    config: SimulationConfig,
) -> SessionOutcomes:
    """Simulate every session of every user and return the per-session counts.

    Args:
        truth: the world's true engagement model.
        user_ids: (M,) non-negative user ids.
        candidates: (M, C) retrieved pin ids per user, -1 padded; the first `config.candidates`
            columns are used and padding is never shown.
        timestamp: serving time (seconds).
        config: funnel parameters.
    """
    user_ids = np.asarray(user_ids)
    candidates = np.asarray(candidates)
    if user_ids.ndim != 1 or user_ids.dtype.kind not in "iu" or (user_ids.size and user_ids.min() < 0):
        raise ValueError(f"user_ids must be a 1-D array of non-negative integer ids, got {user_ids.dtype}")
    if candidates.ndim != 2 or candidates.dtype.kind not in "iu" or candidates.shape[0] != len(user_ids):
        raise ValueError(
            f"candidates must be a ({len(user_ids)}, C) integer matrix, got {candidates.dtype}"
            f" {candidates.shape}"
        )
    if candidates.shape[1] < config.candidates:
        raise ValueError(
            f"candidates has {candidates.shape[1]} columns, fewer than SimulationConfig.candidates"
            f" ({config.candidates}); retrieve at least that many"
        )
    if np.any(candidates < -1):
        raise ValueError("candidates: pin ids must be non-negative, with -1 as padding")
    candidates = candidates[:, : config.candidates].astype(np.int64)
    shape = (len(user_ids), config.sessions_per_user)
    clicks, repins = np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.int64)
    for start in range(0, len(user_ids), _USER_CHUNK):
        part = slice(start, start + _USER_CHUNK)
        clicks[part], repins[part] = _simulate_chunk(
            truth, user_ids[part].astype(np.int64), candidates[part], timestamp, config
        )
    return SessionOutcomes(clicks, repins)


def simulate_online(
    truth: GroundTruth,
    user_ids: np.ndarray,
    candidates: np.ndarray,
    timestamp: float,
    config: SimulationConfig,
) -> dict[str, float]:
    """Engaged sessions, clicks and repins per 1,000 simulated sessions.

    Args:
        truth: the world's true engagement model.
        user_ids: (M,) non-negative user ids.
        candidates: (M, C) retrieved pin ids per user, -1 padded.
        timestamp: serving time (seconds).
        config: funnel parameters.

    Returns:
        {"sim/engaged_sessions", "sim/clicks", "sim/repins"}, each per 1,000 sessions; a session
        is engaged when it has at least one click or repin.
    """
    outcomes = simulate_sessions(truth, user_ids, candidates, timestamp, config)
    sessions = outcomes.clicks.size
    if sessions == 0:
        raise ValueError("user_ids: no users to simulate")
    per_thousand = 1000.0 / sessions
    engaged = (outcomes.clicks > 0) | (outcomes.repins > 0)
    return {
        "sim/engaged_sessions": float(engaged.sum() * per_thousand),
        "sim/clicks": float(outcomes.clicks.sum() * per_thousand),
        "sim/repins": float(outcomes.repins.sum() * per_thousand),
    }


def _simulate_chunk(
    truth: GroundTruth, users: np.ndarray, candidates: np.ndarray, timestamp: float, config: SimulationConfig
) -> tuple[np.ndarray, np.ndarray]:
    m, c = candidates.shape
    sessions, shown = config.sessions_per_user, config.shown_per_session
    valid = candidates >= 0
    # padding is replaced by a real pin id for the world's lookups and masked afterwards
    safe = np.where(valid, candidates, 0)
    true_score = np.asarray(truth.true_score(users[:, None], safe, timestamp), dtype=np.float64)
    if true_score.shape != (m, c):
        raise ValueError(f"truth.true_score returned shape {true_score.shape}, expected {(m, c)}")

    session_key = _hash_mix(
        _hash_mix(np.full((m, 1), config.seed, dtype=np.uint64), users[:, None]),
        np.arange(sessions, dtype=np.uint64)[None, :],
    )  # (m, sessions)
    pin_key = _hash_mix(session_key[:, :, None], safe[:, None, :])  # (m, sessions, c)
    score = true_score[:, None, :] + config.ranker_noise * _normal(pin_key)
    score = np.where(valid[:, None, :], score, -np.inf)

    if shown < c:
        top = np.argpartition(-score, shown - 1, axis=2)[:, :, :shown]
    else:
        top = np.broadcast_to(np.arange(c), (m, sessions, c))
    is_shown = np.take_along_axis(np.broadcast_to(valid[:, None, :], score.shape), top, axis=2)
    shown_pins = np.take_along_axis(np.broadcast_to(safe[:, None, :], score.shape), top, axis=2)
    shown_keys = np.take_along_axis(pin_key, top, axis=2)

    p_click, p_repin = truth.engagement_probabilities(users[:, None], shown_pins.reshape(m, -1), timestamp)
    p_click = np.broadcast_to(np.asarray(p_click, dtype=np.float64), (m, shown_pins[0].size))
    p_repin = np.broadcast_to(np.asarray(p_repin, dtype=np.float64), (m, shown_pins[0].size))
    click = is_shown & (_uniform(_hash_mix(shown_keys, _CLICK)) < p_click.reshape(shown_pins.shape))
    repin = click & (_uniform(_hash_mix(shown_keys, _REPIN)) < p_repin.reshape(shown_pins.shape))
    return click.sum(axis=2), repin.sum(axis=2)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: a bijective avalanche of 64-bit keys (wrapping uint64 arithmetic)."""
    # wrap-around is the point of the hash; numpy only warns about it for 0-d operands
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _hash_mix(key: np.ndarray, value: np.ndarray | int) -> np.ndarray:
    """Fold one more field into a hash key (broadcasting)."""
    value = np.asarray(value).astype(np.uint64)
    return _splitmix64(np.asarray(key, dtype=np.uint64) ^ _splitmix64(value + _GOLDEN))


def _uniform(key: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) float64 from the top 53 bits of a hash."""
    return (key >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


def _normal(key: np.ndarray) -> np.ndarray:
    """Standard normal draws (Box-Muller over two hash streams of the key)."""
    radius = np.sqrt(-2.0 * np.log1p(-_uniform(_hash_mix(key, _NOISE_A))))
    return radius * np.cos(2.0 * np.pi * _uniform(_hash_mix(key, _NOISE_B)))
