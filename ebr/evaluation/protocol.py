"""The evaluation protocol: embeddings -> the serving index -> full-corpus retrieval -> every metric."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from ebr.data.schema import GroundTruth
from ebr.evaluation.metrics import ann_recall, check_ks, check_retrieved, retrieval_metrics
from ebr.evaluation.simulation import SimulationConfig, simulate_online
from ebr.evaluation.task import EvalTask
from ebr.serving.index import IndexConfig, ItemIndex

ANN_RECALL_K = 100


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


def evaluate_embeddings(
    task: EvalTask,
    user_embeddings: np.ndarray,
    pin_embeddings: np.ndarray,
    index: IndexConfig,
    ks: Sequence[int] = (10, 50, 100),
    truth: GroundTruth | None = None,
    simulation: SimulationConfig | None = None,
    progress: bool = True,
    chunk_size: int = 4096,
    ann_recall_queries: int = 10_000,
) -> dict[str, float]:
    """Score a model's embeddings the way serving would use them.

    Builds the item index over the corpus, retrieves for every evaluated user (excluding
    task.exclude), then computes the retrieval metrics, the index's recall against exact search
    and, with `truth`, the simulated online metrics.

    Args:
        task: the evaluation task.
        user_embeddings: (len(task.user_ids), d), row i for task.user_ids[i].
        pin_embeddings: (len(task.corpus), d), row j for task.corpus[j].
        index: index kind and parameters.
        ks: metric cut-offs.
        truth: the synthetic world's engagement model (None skips the simulation).
        simulation: funnel parameters (defaults when None and truth is given).
        progress: show a tqdm progress bar over query chunks.
        chunk_size: queries searched at a time (bounds memory).
        ann_recall_queries: users (evenly spaced) on which "ann_recall@100" is measured; exact
            search costs a full corpus scan per query, so it is measured on a sample.

    Returns:
        Metrics of `evaluate_ranking`, "ann_recall@100" (1.0 for a flat index) and `task_counts`.
    """
    ks = check_ks(ks)
    user_embeddings = np.asarray(user_embeddings)
    pin_embeddings = np.asarray(pin_embeddings)
    if user_embeddings.ndim != 2 or len(user_embeddings) != len(task.user_ids):
        raise ValueError(
            f"user_embeddings must have one row per task user ({len(task.user_ids)}), got shape"
            f" {user_embeddings.shape}"
        )
    if pin_embeddings.ndim != 2 or len(pin_embeddings) != len(task.corpus):
        raise ValueError(
            f"pin_embeddings must have one row per corpus pin ({len(task.corpus)}), got shape"
            f" {pin_embeddings.shape}"
        )
    if chunk_size < 1 or ann_recall_queries < 1:
        raise ValueError(
            f"chunk_size and ann_recall_queries must be positive, got {chunk_size}, {ann_recall_queries}"
        )
    sim_config = simulation if simulation is not None else SimulationConfig()
    depth = max(max(ks), sim_config.candidates) if truth is not None else max(ks)

    item_index = ItemIndex(pin_embeddings, task.corpus, index)
    retrieved = _search_in_chunks(item_index, user_embeddings, depth, task, chunk_size, progress)
    metrics = evaluate_ranking(task, retrieved, ks, truth, sim_config)
    metrics["ann_recall@100"] = _index_recall(
        item_index, pin_embeddings, task, user_embeddings, ann_recall_queries
    )
    metrics.update(task_counts(task))
    return metrics


def _search_in_chunks(
    item_index: ItemIndex, queries: np.ndarray, k: int, task: EvalTask, chunk_size: int, progress: bool
) -> np.ndarray:
    starts = range(0, len(queries), chunk_size)
    parts = []
    for start in tqdm(starts, desc="retrieval", unit="chunk", disable=not progress):
        exclude = None if task.exclude is None else task.exclude.slice(start, start + chunk_size)
        ids, _ = item_index.search(queries[start : start + chunk_size], k, exclude)
        parts.append(ids)
    retrieved = np.concatenate(parts) if parts else np.zeros((0, k), dtype=np.int64)
    return check_retrieved(retrieved, len(task.user_ids), k)


def _index_recall(
    item_index: ItemIndex, pin_embeddings: np.ndarray, task: EvalTask, queries: np.ndarray, n_queries: int
) -> float:
    """The index's own top-100 recall against exact search, without exclusions."""
    if item_index.config.is_exact:
        # the flat index is the exact search
        return 1.0
    sample = np.unique(np.linspace(0, len(queries) - 1, num=min(n_queries, len(queries))).astype(np.int64))
    k = min(ANN_RECALL_K, len(task.corpus))
    approx, _ = item_index.search(queries[sample], k)
    exact_index = ItemIndex(pin_embeddings, task.corpus, IndexConfig())
    exact, _ = exact_index.search(queries[sample], k)
    return ann_recall(approx, exact, k)
