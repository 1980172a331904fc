"""Simulated online metrics: show retrieved candidates to the synthetic world's users and count engagement.

The funnel, per user and session:

1. The ranker orders the retrieved candidates by `t = s + label_noise * sqrt(foresight) * e1`: the
   world's true score `s` plus the part `e1` of this impression's noise that the ranker foresees (the
   session context it sees and retrieval does not). It shows the top `shown_per_session` in that order.
2. A shown pin whose near-duplicate (same `near_duplicate_groups` id) was shown earlier in the
   session is redundant: it takes its slot and is never engaged (`redundant_duplicates`). The
   copies of one image share their noise in a session (the draws are keyed by the group), so a
   corpus full of copies does not buy extra draws of the user's response to the same image.
3. Every other shown pin is clicked with the world's probability for the impression's logit
   `t + label_noise * sqrt(1 - foresight) * e2`, i.e. `s + label_noise * N(0, 1)`: the noise model
   with which the world's logs were drawn. A click is repinned with the repin probability of the
   same noisy logit.

**The funnel property.** Given `t`, a shown pin's click, repin and engagement probabilities grow
with `t`, and the ranker shows the highest `t`. So each session's expected clicks, repins and
engagement are non-decreasing in every candidate's true score, and adding a candidate never lowers
them, for candidate sets holding at most one pin per near-duplicate group (or any set with
`redundant_duplicates` off). In particular, among such sets of K pins of a corpus, the truth's own
top-K scores highest in expectation, and a set that is worse at every rank never scores higher.
(A ranker whose error were independent of the user's response would break this: a set of mediocre
pins can then beat better pins by fooling it.) A near-duplicate of a shown pin costs a slot; that
cost is the point of step 2.

Every random number is a hash of (seed, user, session, pin, stream) (the pin's near-duplicate
group instead of the pin with `redundant_duplicates`) rather than a draw from a
stateful generator, so two arms of an A/B comparison that put the same pin in front of the same
user in the same session see the same noise and the same coin flips: the comparison is paired
and its variance comes only from the pins the arms disagree on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ebr.data.schema import GroundTruth
from ebr.evaluation.hashing import hash_mix, normal, uniform

# independent hash streams per random quantity
_FORESEEN, _CLICK, _REPIN, _UNFORESEEN = (1, 2), 3, 4, (5, 6)
_USER_CHUNK = 2048


@dataclass(frozen=True)
class SimulationConfig:
    """The simulated serving funnel.

    Args:
        sessions_per_user: sessions simulated per user.
        shown_per_session: pins shown per session (the top of the ranker's order).
        ranker_foresight: share, in [0, 1], of the variance of each impression's label noise that the
            ranker foresees and orders by (0: it orders by the true score alone).
        candidates: retrieved candidates per user handed to the ranker (the first columns of the
            retrieved matrix).
        redundant_duplicates: a near-duplicate of a pin shown earlier in the session is never engaged.
        users: the simulated population: at most this many of the evaluation window's active users,
            a fixed seeded sample (`ebr.evaluation.task.build_simulation_task`).
        seed: seed of every random draw and of the population sample.
    """

    sessions_per_user: int = 4
    shown_per_session: int = 10
    ranker_foresight: float = 0.5
    candidates: int = 100
    redundant_duplicates: bool = True
    users: int = 10_000
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("sessions_per_user", "shown_per_session", "candidates", "users"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SimulationConfig.{name} must be a positive integer, got {value!r}")
        if self.shown_per_session > self.candidates:
            raise ValueError(
                f"SimulationConfig.shown_per_session ({self.shown_per_session}) must not exceed"
                f" SimulationConfig.candidates ({self.candidates})"
            )
        foresight = self.ranker_foresight
        if isinstance(foresight, bool) or not isinstance(foresight, int | float) or not 0 <= foresight <= 1:
            raise ValueError(f"SimulationConfig.ranker_foresight must be in [0, 1], got {foresight!r}")
        if not isinstance(self.redundant_duplicates, bool):
            raise ValueError(
                f"SimulationConfig.redundant_duplicates must be a bool, got {self.redundant_duplicates!r}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"SimulationConfig.seed must be a non-negative integer, got {self.seed!r}")


@dataclass(frozen=True)
class SessionOutcomes:
    """Per user and session counts of a simulation.

    Args:
        clicks: (M, sessions_per_user) clicks per session.
        repins: (M, sessions_per_user) repins per session.
        redundant: (M, sessions_per_user) shown pins that were near-duplicates of an earlier one.
    """

    clicks: np.ndarray
    repins: np.ndarray
    redundant: np.ndarray


def simulate_sessions(
    truth: GroundTruth,
    user_ids: np.ndarray,
    candidates: np.ndarray,
    timestamp: float | np.ndarray,
    config: SimulationConfig,
) -> SessionOutcomes:
    """Simulate every session of every user and return the per-session counts.

    Args:
        truth: the world's true engagement model.
        user_ids: (M,) non-negative user ids.
        candidates: (M, C) retrieved pin ids per user, -1 padded; the first `config.candidates`
            columns are used and padding is never shown.
        timestamp: serving time (seconds), one for all users or (M,) one per user.
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
    times = np.asarray(timestamp, dtype=np.float64)
    if times.ndim not in (0, 1) or (times.ndim == 1 and len(times) != len(user_ids)):
        raise ValueError(f"timestamp must be a scalar or one per user ({len(user_ids)}), got {times.shape}")
    candidates = candidates[:, : config.candidates].astype(np.int64)
    shape = (len(user_ids), config.sessions_per_user)
    counts = [np.zeros(shape, dtype=np.int64) for _ in range(3)]
    for start in range(0, len(user_ids), _USER_CHUNK):
        part = slice(start, start + _USER_CHUNK)
        chunk_times = times if times.ndim == 0 else times[part, None]
        for total, value in zip(
            counts,
            _simulate_chunk(truth, user_ids[part].astype(np.int64), candidates[part], chunk_times, config),
            strict=True,
        ):
            total[part] = value
    return SessionOutcomes(*counts)


def simulate_online(
    truth: GroundTruth,
    user_ids: np.ndarray,
    candidates: np.ndarray,
    timestamp: float | np.ndarray,
    config: SimulationConfig,
) -> dict[str, float]:
    """Engaged sessions, clicks, repins and redundant impressions per 1,000 simulated sessions.

    Args:
        truth: the world's true engagement model.
        user_ids: (M,) non-negative user ids.
        candidates: (M, C) retrieved pin ids per user, -1 padded.
        timestamp: serving time (seconds), a scalar or one per user.
        config: funnel parameters.

    Returns:
        {"sim/engaged_sessions", "sim/clicks", "sim/repins", "sim/redundant"}, each per 1,000
        sessions (a session is engaged when it has at least one click), and "sim/users".
    """
    outcomes = simulate_sessions(truth, user_ids, candidates, timestamp, config)
    sessions = outcomes.clicks.size
    if sessions == 0:
        raise ValueError("user_ids: no users to simulate")
    per_thousand = 1000.0 / sessions
    return {
        "sim/engaged_sessions": float((outcomes.clicks > 0).sum() * per_thousand),
        "sim/clicks": float(outcomes.clicks.sum() * per_thousand),
        "sim/repins": float(outcomes.repins.sum() * per_thousand),
        "sim/redundant": float(outcomes.redundant.sum() * per_thousand),
        "sim/users": float(len(user_ids)),
    }


def _simulate_chunk(
    truth: GroundTruth,
    users: np.ndarray,
    candidates: np.ndarray,
    timestamp: float | np.ndarray,
    config: SimulationConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m, c = candidates.shape
    sessions, shown = config.sessions_per_user, config.shown_per_session
    valid = candidates >= 0
    # padding is replaced by a real pin id for the world's lookups and masked afterwards
    safe = np.where(valid, candidates, 0)
    true_score = np.asarray(truth.true_score(users[:, None], safe, timestamp), dtype=np.float64)
    if true_score.shape != (m, c):
        raise ValueError(f"truth.true_score returned shape {true_score.shape}, expected {(m, c)}")

    session_key = hash_mix(
        hash_mix(np.full((m, 1), config.seed, dtype=np.uint64), users[:, None]),
        np.arange(sessions, dtype=np.uint64)[None, :],
    )  # (m, sessions)
    groups = np.asarray(truth.near_duplicate_groups(safe)) if config.redundant_duplicates else safe
    # near-duplicates are one image: in a session the user responds to it once, whichever copy is
    # shown, so its draws are keyed by its group (copies would otherwise be extra lottery tickets)
    pin_key = hash_mix(session_key[:, :, None], groups[:, None, :])  # (m, sessions, c)
    foresight = float(config.ranker_foresight)
    foreseen = normal(pin_key, *_FORESEEN)
    order_score = true_score[:, None, :] + float(truth.label_noise) * np.sqrt(foresight) * foreseen
    order_score = np.where(valid[:, None, :], order_score, -np.inf)

    # the shown slots in the ranker's order, so that "shown earlier" is defined
    if shown < c:
        top = np.argpartition(-order_score, shown - 1, axis=2)[:, :, :shown]
    else:
        top = np.broadcast_to(np.arange(c), (m, sessions, c))
    rank = np.argsort(-np.take_along_axis(order_score, top, axis=2), axis=2, kind="stable")
    top = np.take_along_axis(top, rank, axis=2)
    is_shown = np.take_along_axis(np.broadcast_to(valid[:, None, :], order_score.shape), top, axis=2)
    shown_pins = np.take_along_axis(np.broadcast_to(safe[:, None, :], order_score.shape), top, axis=2)
    shown_keys = np.take_along_axis(pin_key, top, axis=2)
    noise = np.sqrt(foresight) * np.take_along_axis(foreseen, top, axis=2) + np.sqrt(
        1.0 - foresight
    ) * normal(shown_keys, *_UNFORESEEN)

    flat = (m, shown_pins[0].size)
    p_click, p_repin = truth.engagement_probabilities(
        users[:, None], shown_pins.reshape(flat), timestamp, noise=noise.reshape(flat)
    )
    p_click = np.broadcast_to(np.asarray(p_click, dtype=np.float64), flat).reshape(shown_pins.shape)
    p_repin = np.broadcast_to(np.asarray(p_repin, dtype=np.float64), flat).reshape(shown_pins.shape)
    redundant = np.zeros(shown_pins.shape, dtype=bool)
    if config.redundant_duplicates:
        shown_groups = np.take_along_axis(np.broadcast_to(groups[:, None, :], order_score.shape), top, axis=2)
        same = (shown_groups[:, :, :, None] == shown_groups[:, :, None, :]) & is_shown[:, :, :, None]
        earlier = np.tril(np.ones((shown_pins.shape[2],) * 2, dtype=bool), k=-1).T  # [i, j]: i < j
        redundant = is_shown & np.any(same & earlier, axis=2)
    engageable = is_shown & ~redundant
    click = engageable & (uniform(hash_mix(shown_keys, _CLICK)) < p_click)
    repin = click & (uniform(hash_mix(shown_keys, _REPIN)) < p_repin)
    return click.sum(axis=2), repin.sum(axis=2), redundant.sum(axis=2)
