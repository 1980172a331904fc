"""Offline retrieval metrics over full-corpus rankings: recall, NDCG and hit rate."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ebr.data.csr import Csr


def check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    """Validate the metric cut-offs: a non-empty list of positive integers.

    Args:
        ks: cut-offs such as (10, 50, 100).
    """
    values = tuple(ks)
    if not values or any(isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1 for k in values):
        raise ValueError(f"ks must be a non-empty list of positive integers, got {list(values)}")
    return tuple(int(k) for k in values)


def check_retrieved(
    retrieved: np.ndarray, n_rows: int, min_columns: int, name: str = "retrieved"
) -> np.ndarray:
    """Validate a retrieved-id matrix: (n_rows, >= min_columns) integers, -1 padding, no repeats in a row.

    Args:
        retrieved: the matrix.
        n_rows: expected number of rows (users).
        min_columns: the largest cut-off that will be read.
        name: how to refer to the matrix in errors.
    """
    retrieved = np.asarray(retrieved)
    if retrieved.ndim != 2 or retrieved.dtype.kind not in "iu":
        raise ValueError(f"{name} must be a 2-D integer id matrix, got {retrieved.dtype} {retrieved.shape}")
    if retrieved.shape[0] != n_rows:
        raise ValueError(f"{name} has {retrieved.shape[0]} rows, expected {n_rows} (one per user)")
    if retrieved.shape[1] < min_columns:
        raise ValueError(
            f"{name} has {retrieved.shape[1]} columns, fewer than the largest cut-off {min_columns}"
        )
    retrieved = retrieved.astype(np.int64, copy=False)
    if np.any(retrieved < -1):
        raise ValueError(f"{name}: ids must be non-negative, with -1 as padding")
    ordered = np.sort(retrieved, axis=1)
    repeated = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    if repeated.any():
        row = int(np.flatnonzero(repeated.any(axis=1))[0])
        raise ValueError(f"{name}: row {row} retrieves the same id more than once")
    return retrieved


def retrieval_metrics(
    retrieved: np.ndarray, relevant: Csr, ks: Sequence[int] = (10, 50, 100)
) -> dict[str, float]:
    """Recall@K, NDCG@K and hit rate@K averaged over users.

    recall@K = relevant items in the top K / number of relevant items; NDCG@K uses binary gains
    and a log2(rank + 1) discount, normalised by the ideal DCG of min(K, n_relevant) hits;
    hr@K = 1 when the top K holds any relevant item.

    Args:
        retrieved: (M, >= max(ks)) ranked item ids per user, -1 padded, no repeats within a row.
        relevant: per user, the relevant item ids (every row non-empty).
        ks: cut-offs.

    Returns:
        {"recall@K", "ndcg@K", "hr@K"} for every K in ks.
    """
    ks = check_ks(ks)
    retrieved = check_retrieved(retrieved, relevant.n_rows, max(ks))[:, : max(ks)]
    n_relevant = relevant.lengths()
    if relevant.n_rows == 0:
        raise ValueError("relevant: no users to evaluate")
    if np.any(n_relevant == 0):
        raise ValueError(
            f"relevant: user row {int(np.flatnonzero(n_relevant == 0)[0])} has no relevant items"
        )
    hits = relevant.contains(retrieved).astype(np.float64)
    discount = 1.0 / np.log2(np.arange(2, max(ks) + 2))
    ideal_cumulative = np.cumsum(discount)
    cumulative_hits = np.cumsum(hits, axis=1)
    cumulative_gain = np.cumsum(hits * discount, axis=1)
    metrics: dict[str, float] = {}
    for k in ks:
        found = cumulative_hits[:, k - 1]
        ideal = ideal_cumulative[np.minimum(k, n_relevant) - 1]
        metrics[f"recall@{k}"] = float(np.mean(found / n_relevant))
        metrics[f"ndcg@{k}"] = float(np.mean(cumulative_gain[:, k - 1] / ideal))
        metrics[f"hr@{k}"] = float(np.mean(found > 0))
    return metrics
