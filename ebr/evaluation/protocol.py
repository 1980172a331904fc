"""The evaluation protocol: any retriever's full-corpus ranking -> every metric.

Retrieval itself (the two-tower model through its serving index, or a baseline by exhaustive
scoring) happens in ebr.retrieval; this module only scores what was retrieved, so every model is
measured by the same code. Offline metrics score the evaluation task's users (`build_eval_task`);
the simulated online metrics of a job score a population of their own, the same for every arm
(`build_simulation_task`, `evaluate_online`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ebr.data.schema import GroundTruth
from ebr.evaluation.metrics import check_ks, check_retrieved, retrieval_metrics
from ebr.evaluation.simulation import SimulationConfig, simulate_online
from ebr.evaluation.task import EvalTask, as_labels


def task_counts(task: EvalTask) -> dict[str, float]:
    """Size counts of a task: "eval/users", "eval/corpus_size" and every `task.cold` entry as "eval/<key>".

    Args:
        task: the evaluation task.
    """
    counts = {"eval/users": float(len(task.user_ids)), "eval/corpus_size": float(len(task.corpus))}
    counts.update({f"eval/{key}": float(value) for key, value in task.cold.items()})
    return counts


def evaluate_ranking(
    task: EvalTask,
    retrieved: np.ndarray,
    ks: Sequence[int] = (10, 50, 100),
    truth: GroundTruth | None = None,
    simulation: SimulationConfig | None = None,
    prefix: str = "",
) -> dict[str, float]:
    """Retrieval metrics (and simulated online metrics when the world's truth is known) of any ranking.

    Args:
        task: the evaluation task; row i of `retrieved` is for task.user_ids[i]. With
            `task.label_of` (eval.hit_level=signature) a hit counts per label: the ranking is
            scored as its labels, each once at its first place.
        retrieved: (M, C) ranked pin ids, -1 padded; C >= max(ks) and, for the simulation,
            C >= simulation.candidates.
        ks: metric cut-offs.
        truth: the synthetic world's engagement model; None skips the simulation. With it, the
            task's own users are simulated (a quick diagnostic; jobs simulate a population that
            does not depend on the arm, through `evaluate_online`).
        simulation: funnel parameters (defaults when None and truth is given).
        prefix: namespace for the keys, e.g. "popularity" gives "popularity/recall@100".

    Returns:
        {"recall@K", "ndcg@K", "hr@K", and with truth the keys of `simulate_online`}, each key
        prefixed.
    """
    ks = check_ks(ks)
    ranked = retrieved if task.label_of is None else as_labels(retrieved, task.label_of)
    metrics = retrieval_metrics(ranked, task.relevant, ks)
    if truth is not None:
        config = simulation if simulation is not None else SimulationConfig()
        metrics.update(simulate_online(truth, task.user_ids, retrieved, float(task.timestamp), config))
    return _prefixed(metrics, prefix)


def evaluate_online(
    truth: GroundTruth,
    population: EvalTask,
    retrieved: np.ndarray,
    simulation: SimulationConfig,
    prefix: str = "",
) -> dict[str, float]:
    """Simulated online metrics of what a retriever returned for the simulated population.

    Args:
        truth: the synthetic world's engagement model.
        population: the simulated users (`build_simulation_task`); row i of `retrieved` is for
            population.user_ids[i].
        retrieved: (M, C) ranked pin ids, -1 padded, C >= simulation.candidates.
        simulation: funnel parameters.
        prefix: namespace for the keys, e.g. "popularity".

    Returns:
        The keys of `simulate_online`, prefixed.
    """
    retrieved = check_retrieved(retrieved, len(population.user_ids), simulation.candidates)
    metrics = simulate_online(truth, population.user_ids, retrieved, float(population.timestamp), simulation)
    return _prefixed(metrics, prefix)


def _prefixed(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    namespace = prefix.rstrip("/")
    if not namespace:
        return metrics
    return {f"{namespace}/{key}": value for key, value in metrics.items()}
