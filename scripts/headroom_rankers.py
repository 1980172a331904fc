"""The ideal rankers and corpus policies of scripts/headroom.py (one module per concern: this one ranks).

Every ranker here ranks by a `SyntheticTruth`'s score, the world's own or one with a part of its
taste removed (`dataclasses.replace` on the truth's decomposed arrays), over a pool of pins with each
user's training-window engagements excluded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from ebr.data.csr import Csr
from ebr.data.schema import SECONDS_PER_DAY, InteractionData, Split, engaged_pairs
from ebr.data.world.config import WorldConfig
from ebr.data.world.entities import draw_pins, draw_users
from ebr.data.world.taste import build_truth
from ebr.data.world.truth import SyntheticTruth
from ebr.evaluation.corpus_metrics import share_in_corpus
from ebr.evaluation.metrics import retrieval_metrics
from ebr.evaluation.protocol import evaluate_online
from ebr.evaluation.simulation import SimulationConfig
from ebr.evaluation.task import EvalTask, as_labels, by_label
from ebr.serving.corpus import CorpusPolicy
from ebr.serving.signatures import COARSE, freshest_members

DEPTH = 100
# the corpus rows also report the share of relevant pairs their corpus holds
CEILING = "corpus_ceiling"
_USER_CHUNK = 512
# relative rms of the noise that turns a taste vector into a "learned" one (conditional_degraded)
DEGRADATION = 0.5
# corpus budget of the time-decay row, as a share of all pins (scripts/headroom.py --corpus-share)
CORPUS_SHARE = 0.1
HALF_LIVES_DAYS = (1.0, 2.0, 3.0, 7.0)
# the plain sum's shorter window (corpus=sum_7d)
SHORT_WINDOW_DAYS = 7.0

Variants = dict[str, dict[str, float]]


@dataclasses.dataclass(frozen=True)
class World:
    """A generated world with its evaluation: the offline task and the simulated population."""

    config: WorldConfig
    data: InteractionData
    split: Split
    corpus: np.ndarray
    task: EvalTask
    population: EvalTask
    simulation: SimulationConfig
    # variant name -> metrics already measured on this world (rows share the true score's)
    measured: dict = dataclasses.field(default_factory=dict, compare=False)

    @property
    def truth(self) -> SyntheticTruth:
        return self.data.truth


def scores_of(truth: SyntheticTruth, task: EvalTask, pool: np.ndarray, start: int, stop: int) -> np.ndarray:
    """(users start..stop-1, len(pool)) scores of `truth` with each user's excluded pins at -inf."""
    users = task.user_ids[start:stop]
    scores = truth.score_matrix(users, pool, task.timestamp)
    if task.exclude is not None:
        block = task.exclude.slice(start, stop)
        column = np.minimum(np.searchsorted(pool, block.values), len(pool) - 1)
        hit = pool[column] == block.values
        scores[block.row_of_value()[hit], column[hit]] = -np.inf
    return scores


def best_columns(scores: np.ndarray, pool: np.ndarray, depth: int) -> np.ndarray:
    """Per row, the pool pins of the `depth` highest finite scores, best first, -1 padded."""
    out = np.full((len(scores), depth), -1, dtype=np.int64)
    k = min(depth, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), 1, kind="stable"), 1)
    out[:, :k] = np.where(np.isfinite(np.take_along_axis(scores, top, 1)), pool[top], -1)
    return out


def top_k(
    truth: SyntheticTruth,
    task: EvalTask,
    pool: np.ndarray,
    depth: int = DEPTH,
    allow: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Per task user, the `depth` pins of `pool` with the highest score of `truth`, -1 padded.

    Args:
        truth: the ranker's truth.
        task: users, exclusions and serving time.
        pool: sorted candidate pin ids.
        depth: results per user.
        allow: optional (users chunk) -> (chunk, len(pool)) mask of allowed pins.
    """
    out = np.full((len(task.user_ids), depth), -1, dtype=np.int64)
    for start in range(0, len(task.user_ids), _USER_CHUNK):
        stop = min(start + _USER_CHUNK, len(task.user_ids))
        scores = scores_of(truth, task, pool, start, stop)
        if allow is not None:
            scores[~allow(task.user_ids[start:stop])] = -np.inf
        out[start:stop] = best_columns(scores, pool, depth)
    return out


def evaluate(
    world: World, retrieve: Callable[[EvalTask], np.ndarray], relevant: Csr | None = None, key: str = ""
) -> dict:
    """recall@100, NDCG@100 (of `relevant`, default the task's) and the simulated online metrics.

    Args:
        world: the world.
        retrieve: task -> (users, >= 100) ranked pins.
        relevant: the task's relevant sets in the id space `retrieve` returns (e.g. signatures).
        key: when given, the result is remembered on the world under it (and reused).
    """
    if key and key in world.measured:
        return world.measured[key]
    metrics = retrieval_metrics(
        retrieve(world.task), world.task.relevant if relevant is None else relevant, [DEPTH]
    )
    population = world.population
    metrics.update(evaluate_online(world.truth, population, retrieve(population), world.simulation))
    if key:
        world.measured[key] = metrics
    return metrics


def without_own_user_taste(truth: SyntheticTruth) -> SyntheticTruth:
    """The truth with the users' own (idiosyncratic) taste removed, per-interest parts included."""
    return dataclasses.replace(
        truth,
        user_vectors=truth.user_vectors - truth.user_own_taste,
        user_own_taste=np.zeros_like(truth.user_own_taste),
        user_interest_taste=np.zeros_like(truth.user_interest_taste),
    )


def features_only(truth: SyntheticTruth) -> SyntheticTruth:
    """What the features determine: the users' and pins' own taste and the pins' quality removed."""
    users = without_own_user_taste(truth)
    return dataclasses.replace(
        users,
        pin_vectors=truth.pin_vectors - truth.pin_own_taste,
        pin_own_taste=np.zeros_like(truth.pin_own_taste),
        pin_quality=np.zeros_like(truth.pin_quality),
    )


def without_interaction(world: World) -> SyntheticTruth:
    """The truth with every taste table taken from the same world with `feature_interaction=0`."""
    config = dataclasses.replace(world.config, feature_interaction=0.0)
    additive = build_truth(config, draw_users(config), draw_pins(config))
    names = ("user_vectors", "user_own_taste", "user_interest_taste", "pin_vectors", "pin_own_taste")
    return dataclasses.replace(world.truth, **{n: getattr(additive, n) for n in names})


def score_variants(kind: str) -> Callable[[World], Variants]:
    """The rows that compare the true score with a truth that lacks one part of the taste."""
    unknown = {
        "crossing": ("interaction removed", without_interaction),
        "own_taste": ("features only", lambda world: features_only(world.truth)),
        "user_id": ("user own taste removed", lambda world: without_own_user_taste(world.truth)),
    }[kind]

    def variants(world: World) -> Variants:
        rankers = {"true score": world.truth, unknown[0]: unknown[1](world)}
        return {
            name: evaluate(world, lambda task, t=truth: top_k(t, task, world.corpus))
            for name, truth in rankers.items()
        }

    return variants


# ---- conditional retrieval ------------------------------------------------------------------------


def degrade(truth: SyntheticTruth, seed: int) -> SyntheticTruth:
    """A learned, imperfect ranker: noise of relative rms DEGRADATION on each user's general taste and
    on each of their per-interest deviations from it (so without per-interest taste, none there)."""
    rng = np.random.default_rng([seed, 99])

    def noisy(x: np.ndarray) -> np.ndarray:
        rms = float(np.sqrt(np.mean(np.sum(x.astype(np.float64) ** 2, axis=1)))) if len(x) else 0.0
        noise = rng.standard_normal(x.shape) / np.sqrt(x.shape[1])
        return (x + DEGRADATION * rms * noise).astype(np.float32)

    return dataclasses.replace(
        truth, user_vectors=noisy(truth.user_vectors), user_interest_taste=noisy(truth.user_interest_taste)
    )


def single_vector(truth: SyntheticTruth) -> SyntheticTruth:
    """One vector per user (the interest-weighted average of their tastes) for every pin."""
    return dataclasses.replace(truth, user_interest_taste=np.zeros_like(truth.user_interest_taste))


def _interest_sets(truth: SyntheticTruth, users: np.ndarray) -> np.ndarray:
    """(len(users), n_interests) mask of each user's interests."""
    counts = np.diff(truth.user_interest_offsets)[users]
    starts = truth.user_interest_offsets[users]
    rows = np.repeat(np.arange(len(users)), counts)
    entries = (
        np.repeat(starts, counts) + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    )
    mask = np.zeros((len(users), truth.n_interests), dtype=bool)
    mask[rows, truth.user_interest_values[entries]] = True
    return mask


def _pin_tags(truth: SyntheticTruth, pool: np.ndarray) -> np.ndarray:
    """(len(pool), n_interests) mask of each pool pin's interest tags."""
    tags = truth.pin_interests[pool]
    mask = np.zeros((len(pool), truth.n_interests), dtype=bool)
    for column in range(2):
        has = tags[:, column] >= 0
        mask[np.flatnonzero(has), tags[has, column]] = True
    return mask


def per_interest(truth: SyntheticTruth, task: EvalTask, pool: np.ndarray, depth: int = DEPTH) -> np.ndarray:
    """Equal budgets per interest of each user: for each, the top pins tagged with it (no repeats).

    Interests are served in the user's weight order; the remainder of the budget goes to the heaviest.
    """
    offsets, values = truth.user_interest_offsets, truth.user_interest_values
    tags = _pin_tags(truth, pool)
    out = np.full((len(task.user_ids), depth), -1, dtype=np.int64)
    for start in range(0, len(task.user_ids), _USER_CHUNK):
        stop = min(start + _USER_CHUNK, len(task.user_ids))
        users = task.user_ids[start:stop]
        scores = scores_of(truth, task, pool, start, stop)
        counts = np.diff(offsets)[users]
        lists = []
        for slot in range(int(counts.max())):
            interest = np.where(counts > slot, values[np.minimum(offsets[users] + slot, len(values) - 1)], -1)
            allowed = tags[:, np.maximum(interest, 0)].T & (interest >= 0)[:, None]
            lists.append(best_columns(np.where(allowed, scores, -np.inf), pool, depth))
        for row, n in enumerate(counts):
            budgets = depth // n + (np.arange(n) < depth % n)
            chosen: dict[int, None] = {}
            for slot in range(n):
                fresh = [p for p in lists[slot][row] if p >= 0 and p not in chosen]
                chosen.update(dict.fromkeys(fresh[: budgets[slot]]))
            out[start + row, : len(chosen)] = list(chosen)[:depth]
    return out


def conditional_variants(degraded: bool) -> Callable[[World], Variants]:
    """Plain and per-interest retrieval for a single-vector ranker, and per-interest (conditional) retrieval.

    "filtered plain" queries the single vector once per interest of the user, with that interest's
    filter and an equal budget: the serving of conditional retrieval without its conditional taste.
    "plain, interests only" is one top-100 of the single vector among the user's interests.
    """

    def variants(world: World) -> Variants:
        conditional = degrade(world.truth, world.config.seed) if degraded else world.truth
        plain = single_vector(conditional)
        truth, pool = world.truth, world.corpus
        tags = _pin_tags(truth, pool).astype(np.float32)

        def allow(users: np.ndarray) -> np.ndarray:
            return (_interest_sets(truth, users).astype(np.float32) @ tags.T) > 0

        return {
            "plain": evaluate(world, lambda task: top_k(plain, task, pool)),
            "plain, interests only": evaluate(world, lambda task: top_k(plain, task, pool, allow=allow)),
            "filtered plain": evaluate(world, lambda task: per_interest(plain, task, pool)),
            "per-interest": evaluate(world, lambda task: per_interest(conditional, task, pool)),
        }

    return variants


# ---- corpus policies ------------------------------------------------------------------------------


def representatives(world: World, policy: str) -> np.ndarray:
    """Per pin, the pin that stands for its coarse signature: "canonical" (earliest) or "freshest"."""
    meta = world.data.pins.meta
    if policy == "canonical":
        return meta["canonical_pin"]
    return freshest_members(meta[COARSE], meta["created_at"], world.task.timestamp)


# the package's corpus metrics and signature relabelling, under the names this script's rows use
corpus_ceiling = share_in_corpus
_as_signatures = as_labels


def _signature_relevant(world: World, signature: np.ndarray) -> Csr:
    return by_label(world.task.relevant, signature)


def _remapped(world: World, name: str, policy: str | None) -> dict[str, float]:
    """The ideal ranker over the corpus remapped by `policy` (None: as is); recall per signature."""
    key = f"remapping/{name}"
    if key not in world.measured:
        signature = world.data.pins.meta["coarse_signature"]
        pool = world.corpus if policy is None else np.unique(representatives(world, policy)[world.corpus])
        metrics = evaluate(world, lambda task: top_k(world.truth, task, pool))
        retrieved = _as_signatures(top_k(world.truth, world.task, pool), signature)
        by_signature = _signature_relevant(world, signature)
        metrics.update(retrieval_metrics(retrieved, by_signature, [DEPTH]))
        metrics[CEILING] = corpus_ceiling(by_signature, np.unique(signature[pool]))
        world.measured[key] = metrics
    return world.measured[key]


def decayed_corpus(
    world: World, half_life_days: float | None, share: float = CORPUS_SHARE, window_days: float | None = None
) -> np.ndarray:
    """The top `share` of pins by training-window engagements, each weighted 2^(-age / half-life)
    (the package's `corpus=time_decay`; with no half-life `corpus=sum` over the last `window_days`,
    or the whole window when None)."""
    if half_life_days is None:
        policy = CorpusPolicy(scoring="sum", window_days=window_days, size=share)
    else:
        policy = CorpusPolicy(scoring="time_decay", half_life_days=half_life_days, size=share)
    return policy.build(world.data.pins, world.split.train, world.task.timestamp).pins


def corpus_variants(kind: str, share: float = CORPUS_SHARE) -> Callable[[World], Variants]:
    """Each corpus policy with the ideal ranker over it (the time-decay row's at a budget of
    `share` of the pins)."""

    def variants(world: World) -> Variants:
        truth = world.truth
        if kind == "remapping":
            return {
                name: _remapped(world, name, policy)
                for name, policy in (
                    ("no remapping", None),
                    ("canonical", "canonical"),
                    ("freshest", "freshest"),
                )
            }
        policies: dict[str, tuple[float | None, float | None]] = {
            "plain sum": (None, None),
            f"sum {SHORT_WINDOW_DAYS:g} d": (None, SHORT_WINDOW_DAYS),
            **{f"half-life {h:g} d": (h, None) for h in HALF_LIVES_DAYS},
        }
        out = {}
        for name, (half_life, window_days) in policies.items():
            pool = decayed_corpus(world, half_life, share, window_days)
            metrics = evaluate(world, lambda task, p=pool: top_k(truth, task, p))
            out[name] = {**metrics, CEILING: corpus_ceiling(world.task.relevant, pool)}
        return out

    return variants


# ---- the pre-training presets ---------------------------------------------------------------------


def pretraining_statistics(data: InteractionData, split: Split, window_days: float = 14.0) -> str:
    """Median engagements per user (over all users) in each whole `window_days` window before train."""
    pretrain = split.pretrain
    if pretrain.empty:
        return "no pre-training window"
    end = int(split.train["timestamp"].min())
    start = int(pretrain["timestamp"].min())
    cells = []
    n_windows = int((end - start) // (window_days * SECONDS_PER_DAY))
    for w in range(n_windows):
        stop = end - w * window_days * SECONDS_PER_DAY
        frame = pretrain[
            (pretrain["timestamp"] >= stop - window_days * SECONDS_PER_DAY) & (pretrain["timestamp"] < stop)
        ]
        users, _ = engaged_pairs(frame, "split.pretrain")
        counts = np.bincount(users, minlength=data.users.n_rows)
        cells.append(f"window -{w + 1}: median {np.median(counts):g}, mean {counts.mean():.1f}")
    days = (end - start) / SECONDS_PER_DAY
    return (
        f"pre-training window {days:.0f} days, {n_windows} whole {window_days:g}-day windows; "
        + "; ".join(cells)
    )
