"""The headroom study's conditional rows: per-interest retrieval against filtered plain retrieval."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from ebr.data.world.truth import SyntheticTruth
from ebr.diagnostics.headroom.rankers import DEPTH, Variants, World, evaluate, top_k
from ebr.evaluation.task import EvalTask
from ebr.retrieval.oracle import truth_top_k

# relative rms of the noise that turns a taste vector into a "learned" one (conditional_degraded)
DEGRADATION = 0.5


def degrade(truth: SyntheticTruth, seed: int) -> SyntheticTruth:
    """A learned, imperfect ranker: noise of relative rms DEGRADATION on each user's general taste and
    on each of their per-interest deviations from it (so without per-interest taste, none there).

    Args:
        truth: the world's truth.
        seed: the noise's seed (the world's).
    """
    rng = np.random.default_rng([seed, 99])

    def noisy(x: np.ndarray) -> np.ndarray:
        rms = float(np.sqrt(np.mean(np.sum(x.astype(np.float64) ** 2, axis=1)))) if len(x) else 0.0
        noise = rng.standard_normal(x.shape) / np.sqrt(x.shape[1])
        return (x + DEGRADATION * rms * noise).astype(np.float32)

    return dataclasses.replace(
        truth, user_vectors=noisy(truth.user_vectors), user_interest_taste=noisy(truth.user_interest_taste)
    )


def single_vector(truth: SyntheticTruth) -> SyntheticTruth:
    """One vector per user (the interest-weighted average of their tastes) for every pin.

    Args:
        truth: the truth to flatten.
    """
    return dataclasses.replace(truth, user_interest_taste=np.zeros_like(truth.user_interest_taste))


def interest_sets(truth: SyntheticTruth, users: np.ndarray) -> np.ndarray:
    """(len(users), n_interests) mask of each user's interests.

    Args:
        truth: the world's truth.
        users: user ids.
    """
    counts = np.diff(truth.user_interest_offsets)[users]
    starts = truth.user_interest_offsets[users]
    rows = np.repeat(np.arange(len(users)), counts)
    entries = (
        np.repeat(starts, counts) + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    )
    mask = np.zeros((len(users), truth.n_interests), dtype=bool)
    mask[rows, truth.user_interest_values[entries]] = True
    return mask


def pin_tags(truth: SyntheticTruth, pool: np.ndarray) -> np.ndarray:
    """(len(pool), n_interests) mask of each pool pin's interest tags.

    Args:
        truth: the world's truth.
        pool: pin ids.
    """
    tags = truth.pin_interests[pool]
    mask = np.zeros((len(pool), truth.n_interests), dtype=bool)
    for column in range(2):
        has = tags[:, column] >= 0
        mask[np.flatnonzero(has), tags[has, column]] = True
    return mask


def _slot_filter(truth: SyntheticTruth, tags: np.ndarray, slot: int) -> Callable[[np.ndarray], np.ndarray]:
    """users -> (users, pool) mask of the pins tagged with each user's `slot`-th interest (none: no pin)."""
    offsets, values = truth.user_interest_offsets, truth.user_interest_values

    def allow(users: np.ndarray) -> np.ndarray:
        counts = np.diff(offsets)[users]
        interest = np.where(counts > slot, values[np.minimum(offsets[users] + slot, len(values) - 1)], -1)
        return tags[:, np.maximum(interest, 0)].T & (interest >= 0)[:, None]

    return allow


def only_slot(truth: SyntheticTruth, slot: int) -> SyntheticTruth:
    """The truth as seen from a session browsing each user's `slot`-th interest: that interest alone.

    A pin tagged with it is then scored by the user's weight on it and their taste for it, even when
    the pin carries another interest the user weighs more (`WorldConfig.source_taste`'s engagement).

    Args:
        truth: the world's truth.
        slot: the interest's rank in each user's list (a user with fewer keeps no interest).
    """
    offsets = truth.user_interest_offsets
    counts = np.diff(offsets)
    has = counts > slot
    entries = offsets[:-1][has] + slot
    lengths = has.astype(np.int64)
    return dataclasses.replace(
        truth,
        user_interest_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(offsets.dtype),
        user_interest_values=truth.user_interest_values[entries],
        user_interest_weights=truth.user_interest_weights[entries],
        user_interest_taste=truth.user_interest_taste[entries],
    )


def per_interest(
    truth: SyntheticTruth, task: EvalTask, pool: np.ndarray, depth: int = DEPTH, by_session: bool = False
) -> np.ndarray:
    """Equal budgets per interest of each user: for each, the top pins tagged with it (no repeats).

    Interests are served in the user's weight order; the remainder of the budget goes to the heaviest.

    Args:
        truth: the ranker's truth.
        task: users, exclusions and serving time.
        pool: sorted candidate pin ids.
        depth: results per user.
        by_session: rank each interest's pins by the taste of a session browsing it (`only_slot`)
            instead of the pin's top tag.
    """
    counts = np.diff(truth.user_interest_offsets)[task.user_ids]
    tags = pin_tags(truth, pool)
    lists = [
        truth_top_k(
            only_slot(truth, slot) if by_session else truth,
            task,
            pool,
            depth,
            _slot_filter(truth, tags, slot),
        )
        for slot in range(int(counts.max()) if len(counts) else 0)
    ]
    out = np.full((len(task.user_ids), depth), -1, dtype=np.int64)
    for row, n in enumerate(counts):
        budgets = depth // n + (np.arange(n) < depth % n)
        chosen: dict[int, None] = {}
        for slot in range(n):
            fresh = [p for p in lists[slot][row] if p >= 0 and p not in chosen]
            chosen.update(dict.fromkeys(fresh[: budgets[slot]]))
        out[row, : len(chosen)] = list(chosen)[:depth]
    return out


def conditional_variants(degraded: bool) -> Callable[[World], Variants]:
    """Plain and per-interest retrieval for a single-vector ranker, and per-interest (conditional) retrieval.

    "filtered plain" queries the single vector once per interest of the user, with that interest's
    filter and an equal budget: the serving of conditional retrieval without its conditional taste.
    "plain, interests only" is one top-100 of the single vector among the user's interests.

    Args:
        degraded: rank by a degraded truth (`degrade`) instead of the world's own.
    """

    def variants(world: World) -> Variants:
        conditional = degrade(world.truth, world.config.seed) if degraded else world.truth
        plain = single_vector(conditional)
        truth, pool = world.truth, world.corpus
        tags = pin_tags(truth, pool).astype(np.float32)

        def allow(users: np.ndarray) -> np.ndarray:
            return (interest_sets(truth, users).astype(np.float32) @ tags.T) > 0

        return {
            "plain": evaluate(world, lambda task: top_k(plain, task, pool)),
            "plain, interests only": evaluate(world, lambda task: top_k(plain, task, pool, allow=allow)),
            "filtered plain": evaluate(world, lambda task: per_interest(plain, task, pool)),
            "per-interest": evaluate(world, lambda task: per_interest(conditional, task, pool)),
        }

    return variants


def source_variants(world: World) -> Variants:
    """Per-interest retrieval ranked by the session's interest vs by the pin's top tag (ideal rankers).

    "session taste" ranks each served interest's pins by the taste of a session browsing it (what a
    model conditioned on the logged source interest can learn); "top-tag taste" by the truth's own
    score, the pin's tag the user weighs most (what the pins' tags alone tell). They differ only on
    pins carrying two interests the user follows; the test engagements follow the session's taste in
    the share `source_taste` of impressions.

    Args:
        world: the world.
    """
    truth, pool = world.truth, world.corpus
    return {
        "top-tag taste": evaluate(world, lambda task: per_interest(truth, task, pool)),
        "session taste": evaluate(world, lambda task: per_interest(truth, task, pool, by_session=True)),
    }
