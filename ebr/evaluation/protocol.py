"""The evaluation protocol: any retriever's full-corpus ranking -> every metric.

Retrieval itself (the two-tower model through its serving index, or a baseline by exhaustive
scoring) happens in ebr.retrieval; this module only scores what was retrieved, so every model is
measured by the same code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ebr.data.schema import GroundTruth
from ebr.evaluation.metrics import check_ks, retrieval_metrics
from ebr.evaluation.simulation import SimulationConfig, simulate_online
from ebr.evaluation.task import EvalTask


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
        task: the evaluation task; row i of `retrieved` is for task.user_ids[i].
        retrieved: (M, C) ranked pin ids, -1 padded; C >= max(ks) and, for the simulation,
            C >= simulation.candidates.
        ks: metric cut-offs.
        truth: the synthetic world's engagement model; None (real data) skips the simulation.
        simulation: funnel parameters (defaults when None and truth is given).
        prefix: namespace for the keys, e.g. "popularity" gives "popularity/recall@100".

    Returns:
        {"recall@K", "ndcg@K", "hr@K", and with truth "sim/engaged_sessions", "sim/clicks",
        "sim/repins"}, each key prefixed.
    """
    ks = check_ks(ks)
    metrics = retrieval_metrics(retrieved, task.relevant, ks)
    if truth is not None:
        config = simulation if simulation is not None else SimulationConfig()
        metrics.update(simulate_online(truth, task.user_ids, retrieved, float(task.timestamp), config))
    namespace = prefix.rstrip("/")
    if not namespace:
        return metrics
    return {f"{namespace}/{key}": value for key, value in metrics.items()}
