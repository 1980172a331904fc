"""What the exhaustive-scoring baselines share: the train matrix, and ranking by dense scores.

A baseline answers an `EvalTask` with a ranked (M, k) matrix of corpus pin ids, the user's
excluded pins removed, -1 padded; ties go to the lower pin id, so rankings are deterministic.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from ebr.data.schema import Split
from ebr.evaluation.task import EvalTask
from ebr.retrieval.protocol import FittedPerJob

# scores are materialised for this many (user, corpus pin) pairs at a time
SCORE_BLOCK = 1 << 22


def interaction_matrix(split: Split, n_users: int, n_pins: int) -> sp.csr_matrix:
    """The binary (n_users, n_pins) matrix of `split.train` engagements (clicks and repins).

    Args:
        split: the split (only `train` is read).
        n_users: rows.
        n_pins: columns.
    """
    users, pins = split.train_engaged
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


def rank_corpus(
    score_users: Callable[[np.ndarray], np.ndarray], task: EvalTask, k: int, corpus_columns: bool = False
) -> np.ndarray:
    """Retrieval by exhaustive scoring: top-k corpus pins per user, excluded pins removed.

    Args:
        score_users: maps user ids (B,) to dense scores (B, n_pins) over all pin ids, or with
            `corpus_columns` (B, len(task.corpus)) over the corpus pins only.
        task: the evaluation task.
        k: results per user.
        corpus_columns: `score_users` scores the corpus pins only (a scorer that can score any
            subset, such as the oracle, need not score every pin).

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
        scores = np.asarray(score_users(task.user_ids[start:stop]), dtype=np.float64)
        if not corpus_columns:
            scores = scores[:, corpus]
        if task.exclude is not None:
            block = task.exclude.slice(start, stop)
            # excluded pins are corpus pins by construction, so searchsorted finds their columns
            scores[block.row_of_value(), np.searchsorted(corpus, block.values)] = -np.inf
        columns = top_k_columns(scores, k)
        picked = corpus[columns]
        valid = np.isfinite(np.take_along_axis(scores, columns, axis=1))
        result[start:stop, : columns.shape[1]] = np.where(valid, picked, -1)
    return result


class ExhaustiveRanking(FittedPerJob):
    """What a baseline with dense scores over every pin id shares: retrieval ranks the corpus by them
    (each is fitted in every job: no saved model to load).

    Subclasses define `score(users) -> (len(users), n_pins)`.
    """

    def score(self, users: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def retrieve(self, task: EvalTask, k: int) -> np.ndarray:
        """Top-k corpus pins by score, the user's excluded pins removed (ties to the lower pin id).

        Args:
            task: users, corpus and exclusions.
            k: results per user.
        """
        return rank_corpus(self.score, task, k)
