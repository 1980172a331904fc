"""The headroom study's world, its evaluation, and the truths its ideal rankers rank by.

Every ranker ranks by a `SyntheticTruth`'s score (`ebr.retrieval.oracle.truth_top_k`), the world's
own or one with a part of its taste removed (`dataclasses.replace` on the truth's decomposed
arrays), over a pool of pins with each user's training-window engagements excluded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from ebr.data.csr import Csr
from ebr.data.schema import InteractionData, Split
from ebr.data.world.config import WorldConfig
from ebr.data.world.entities import draw_pins, draw_users
from ebr.data.world.taste import build_truth
from ebr.data.world.truth import SyntheticTruth
from ebr.evaluation.metrics import retrieval_metrics
from ebr.evaluation.protocol import evaluate_online
from ebr.evaluation.simulation import SimulationConfig
from ebr.evaluation.task import EvalTask
from ebr.retrieval.oracle import truth_top_k

DEPTH = 100
# the corpus rows also report the share of relevant pairs their corpus holds
CEILING = "corpus_ceiling"

Variants = dict[str, dict[str, float]]


@dataclasses.dataclass(frozen=True)
class World:
    """A generated world with its evaluation: the offline task and the simulated population.

    Args:
        config: the world's config.
        data: the generated world.
        split: its time split.
        corpus: the training window's corpus (sorted pin ids).
        task: the offline evaluation task over `corpus`.
        population: the simulated population's task.
        simulation: the simulated online settings.
        measured: variant name -> metrics already measured on this world (rows share the true
            score's).
    """

    config: WorldConfig
    data: InteractionData
    split: Split
    corpus: np.ndarray
    task: EvalTask
    population: EvalTask
    simulation: SimulationConfig
    measured: dict = dataclasses.field(default_factory=dict, compare=False)

    @property
    def truth(self) -> SyntheticTruth:
        """The world's true engagement model."""
        return self.data.truth


def top_k(
    truth: SyntheticTruth,
    task: EvalTask,
    pool: np.ndarray,
    allow: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Per task user, the DEPTH pins of `pool` with the highest score of `truth`, -1 padded.

    Args:
        truth: the ranker's truth.
        task: users, exclusions and serving time.
        pool: sorted candidate pin ids.
        allow: optional (users chunk) -> (chunk, len(pool)) mask of allowed pins.
    """
    return truth_top_k(truth, task, pool, DEPTH, allow)


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
    """The truth with the users' own (idiosyncratic) taste removed, per-interest parts included.

    Args:
        truth: the world's truth.
    """
    return dataclasses.replace(
        truth,
        user_vectors=truth.user_vectors - truth.user_own_taste,
        user_own_taste=np.zeros_like(truth.user_own_taste),
        user_interest_taste=np.zeros_like(truth.user_interest_taste),
    )


def features_only(truth: SyntheticTruth) -> SyntheticTruth:
    """What the features determine: the users' and pins' own taste and the pins' quality removed.

    Args:
        truth: the world's truth.
    """
    users = without_own_user_taste(truth)
    return dataclasses.replace(
        users,
        pin_vectors=truth.pin_vectors - truth.pin_own_taste,
        pin_own_taste=np.zeros_like(truth.pin_own_taste),
        pin_quality=np.zeros_like(truth.pin_quality),
    )


def without_interaction(world: World) -> SyntheticTruth:
    """The truth with every taste table taken from the same world with `feature_interaction=0`.

    Args:
        world: the world.
    """
    config = dataclasses.replace(world.config, feature_interaction=0.0)
    additive = build_truth(config, draw_users(config), draw_pins(config))
    names = ("user_vectors", "user_own_taste", "user_interest_taste", "pin_vectors", "pin_own_taste")
    return dataclasses.replace(world.truth, **{n: getattr(additive, n) for n in names})


def score_variants(kind: str) -> Callable[[World], Variants]:
    """The rows that compare the true score with a truth that lacks one part of the taste.

    Args:
        kind: "crossing", "own_taste" or "user_id".
    """
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
