"""The Retriever protocol of the classical baselines, and what they share.

A baseline is fitted on `Split.train` only and answers an `EvalTask` with a ranked (M, k) matrix
of corpus pin ids, the user's excluded pins removed, -1 padded; the same evaluation code then
scores it as it scores the two-tower model. Hyperparameters are chosen on the validation
window (`build_eval_task(split, corpus, window="val")`), which never reads `Split.test`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np
import scipy.sparse as sp

from ebr.data.schema import Split, engaged_pairs
from ebr.evaluation.metrics import retrieval_metrics
from ebr.evaluation.task import EvalTask, build_eval_task
from ebr.serving.corpus import training_window_corpus

TUNE_METRIC_K = 50
# scores are materialised for this many (user, corpus pin) pairs at a time
SCORE_BLOCK = 1 << 22

Param = TypeVar("Param")


@runtime_checkable
class Retriever(Protocol):
    """A model that retrieves pins for the users of an evaluation task."""

    def fit(self, split: Split, n_users: int, n_pins: int) -> None:
        """Fit on `split.train` (and, when tuning, choose hyperparameters on `split.val`).

        Args:
            split: the data split; `split.test` must never be read.
            n_users: number of user ids (rows of the data's user table).
            n_pins: number of pin ids.
        """
        ...

    def retrieve(self, task: EvalTask, k: int) -> np.ndarray:
        """Top-k pins per evaluated user.

        Args:
            task: users, corpus and exclusions.
            k: results per user.

        Returns:
            (len(task.user_ids), k) int64 corpus pin ids, best first, excluded pins removed, -1 padded.
        """
        ...


def interaction_matrix(split: Split, n_users: int, n_pins: int) -> sp.csr_matrix:
    """The binary (n_users, n_pins) matrix of `split.train` engagements (clicks and repins).

    Args:
        split: the split (only `train` is read).
        n_users: rows.
        n_pins: columns.
    """
    users, pins = engaged_pairs(split.train, "split.train")
    if len(users) and (users.max() >= n_users or pins.max() >= n_pins):
        raise ValueError(
            f"split.train: ids exceed the table sizes (user max {users.max()} for n_users={n_users},"
            f" pin max {pins.max()} for n_pins={n_pins})"
        )
    matrix = sp.csr_matrix((np.ones(len(users), dtype=np.float64), (users, pins)), shape=(n_users, n_pins))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0  # repeated engagements count once
    return matrix


def top_k_columns(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's k highest scores, best first; ties go to the lower column.

    Args:
        scores: (B, C) scores (-inf marks a column that must not be returned).
        k: wanted columns (at most C are returned).

    Returns:
        (B, min(k, C)) int64 column indices.
    """
    rows, width = scores.shape
    k = min(k, width)
    if k == 0 or rows == 0:
        return np.zeros((rows, k), dtype=np.int64)
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]
    above = scores > kth
    tied = scores == kth
    # of the columns tied with the k-th score, keep the lowest ones, so the result is deterministic
    need = k - above.sum(axis=1, keepdims=True)
    chosen = above | (tied & (np.cumsum(tied, axis=1) <= need))
    columns = np.nonzero(chosen)[1].reshape(rows, k)  # ascending within each row
    values = np.take_along_axis(scores, columns, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    return np.take_along_axis(columns, order, axis=1).astype(np.int64, copy=False)


def rank_corpus(score_users: Callable[[np.ndarray], np.ndarray], task: EvalTask, k: int) -> np.ndarray:
    """Retrieval by exhaustive scoring: top-k corpus pins per user, excluded pins removed.

    Args:
        score_users: maps user ids (B,) to dense scores (B, n_pins) over all pin ids.
        task: the evaluation task.
        k: results per user.

    Returns:
        (M, k) int64 pin ids, -1 padded (when the corpus minus exclusions has fewer than k pins).
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    corpus = task.corpus
    n_users = len(task.user_ids)
    result = np.full((n_users, k), -1, dtype=np.int64)
    batch = max(1, SCORE_BLOCK // max(len(corpus), 1))
    for start in range(0, n_users, batch):
        stop = min(start + batch, n_users)
        scores = np.asarray(score_users(task.user_ids[start:stop]), dtype=np.float64)[:, corpus]
        if task.exclude is not None:
            block = task.exclude.slice(start, stop)
            # excluded pins are corpus pins by construction, so searchsorted finds their columns
            scores[block.row_of_value(), np.searchsorted(corpus, block.values)] = -np.inf
        columns = top_k_columns(scores, k)
        picked = corpus[columns]
        valid = np.isfinite(np.take_along_axis(scores, columns, axis=1))
        result[start:stop, : columns.shape[1]] = np.where(valid, picked, -1)
    return result


def tune_on_validation(
    split: Split,
    candidates: Sequence[Param],
    fit_candidate: Callable[[Param], Retriever],
    k: int = TUNE_METRIC_K,
) -> tuple[Param, dict[str, float], Retriever]:
    """Grid search on the validation window: fit each candidate on train, keep the best recall@k.

    Only `split.train` and `split.val` are read; ties go to the earlier candidate.

    Args:
        split: the split.
        candidates: hyperparameter values, tried in order.
        fit_candidate: fits a model with one value on `split.train` and returns it.
        k: the recall cut-off.

    Returns:
        (best value, {str(value): val recall@k}, the model fitted with the best value).

    Raises:
        ValueError: when there are no candidates or the validation window is empty.
    """
    if not candidates:
        raise ValueError("tuning grid is empty")
    if len(split.val) == 0:
        raise ValueError("split.val is empty: hyperparameter tuning needs a validation window")
    task = build_eval_task(split, training_window_corpus(split), window="val", exclude_train=True)
    scores: dict[str, float] = {}
    best: tuple[Param, float, Retriever] | None = None
    for value in candidates:
        model = fit_candidate(value)
        recall = retrieval_metrics(model.retrieve(task, k), task.relevant, [k])[f"recall@{k}"]
        scores[str(value)] = recall
        if best is None or recall > best[1]:
            best = (value, recall, model)
    assert best is not None
    return best[0], scores, best[2]
