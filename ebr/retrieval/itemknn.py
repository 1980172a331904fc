"""Item-based k-nearest-neighbours (Deshpande & Karypis, 2004) with cosine similarity.

sim(i, j) = |users of i ∩ users of j| / sqrt(|users of i| |users of j|) on the binary train
matrix. Each target pin j keeps its `neighbours` most similar other pins N_k(j) (ties to the
lower pin id); a user's score for j is the sum of sim(i, j) over the user's train pins i in N_k(j).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from ebr.data.schema import InteractionData, Split
from ebr.retrieval.protocol import FitContext
from ebr.retrieval.ranking import (
    SCORE_BLOCK,
    ExhaustiveRanking,
    interaction_matrix,
    top_k_columns,
)
from ebr.retrieval.tuning import tune_on_validation, tuning_metrics

log = logging.getLogger(__name__)

DEFAULT_NEIGHBOURS = (20, 50, 100, 200, 400, 800, 1600, 3200)


class ItemKNN(ExhaustiveRanking):
    """Item-kNN retriever.

    Args:
        neighbours: neighbours kept per pin (used as is when `tune` is false).
        tune: choose `neighbours` from `grid` by validation recall@50 (never looking at test).
        grid: the neighbour counts tried when tuning.
    """

    def __init__(
        self, neighbours: int = 100, tune: bool = False, grid: Sequence[int] = DEFAULT_NEIGHBOURS
    ) -> None:
        for name, value in (("neighbours", neighbours), *((f"grid[{i}]", v) for i, v in enumerate(grid))):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"model.{name} must be a positive integer, got {value!r}")
        self.neighbours = int(neighbours)
        self.tune = tune
        self.grid = tuple(int(v) for v in grid)
        self.validation: dict[str, float] = {}
        self._matrix: sp.csr_matrix | None = None
        self._weights: sp.csr_matrix | None = None

    def fit(self, data: InteractionData, split: Split, context: FitContext) -> None:
        """Fit on `split.train`; with `tune`, first pick `neighbours` on the tuning window's `val`.

        Args:
            data: the data set (only its table sizes are read).
            split: the split (`split.test` is never read).
            context: the job's corpus and tuning window (`context.tuning_window(split)`).
        """
        n_users, n_pins = data.users.n_rows, data.pins.n_rows
        if not self.tune:
            self._set(*_fitted(interaction_matrix(split, n_users, n_pins), self.neighbours))
            return
        tuning = context.tuning_window(split)
        matrix = interaction_matrix(tuning.split, n_users, n_pins)
        candidates = self.grid
        # neighbour lists are computed once, for the largest count, and cut for the smaller ones
        targets, neighbours, similarity = neighbour_lists(matrix, max(candidates))

        def fit_candidate(count: int) -> ItemKNN:
            model = ItemKNN(neighbours=count)
            model._set(matrix, _weights(targets, neighbours, similarity, count, n_pins))
            return model

        best, self.validation, model = tune_on_validation(
            tuning.split, tuning.corpus, candidates, fit_candidate, name="neighbours"
        )
        log.info("ItemKNN: validation recall@50 by neighbours %s; chose %d", self.validation, best)
        self.neighbours = best
        if tuning.split is split:
            self._set(model._matrix, model._weights)
        else:
            # refit protocol: the count chosen on train -> val, neighbours recomputed on train+val
            self._set(*_fitted(interaction_matrix(split, n_users, n_pins), best))

    def _set(self, matrix: sp.csr_matrix | None, weights: sp.csr_matrix | None) -> None:
        self._matrix, self._weights = matrix, weights

    def score(self, users: np.ndarray) -> np.ndarray:
        """Scores of the given users over every pin id.

        Args:
            users: user ids.

        Returns:
            (len(users), n_pins) float64: score[u, j] = sum of sim(i, j) over u's train pins i in N_k(j).
        """
        if self._matrix is None or self._weights is None:
            raise RuntimeError("ItemKNN.score called before fit")
        return (self._matrix[np.asarray(users, dtype=np.int64)] @ self._weights).toarray()

    def own_metrics(self) -> dict[str, float]:
        """tune/neighbours, and with `tune` the validation recall@50 of every count tried."""
        return tuning_metrics("neighbours", self.neighbours, self.validation)


def neighbour_lists(matrix: sp.csr_matrix, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The `count` most cosine-similar other pins of every pin with a train engagement.

    Args:
        matrix: binary (n_users, n_pins) train matrix.
        count: neighbours per pin.

    Returns:
        (targets (T,), neighbours (T, c), similarity (T, c)), c = min(count, n_pins); each row is
        sorted by similarity descending then pin id; a pin with fewer positive similarities
        has its row padded with -1 and similarity 0.
    """
    n_pins = matrix.shape[1]
    by_user = matrix.tocsc()
    by_pin = matrix.T.tocsr()
    norms = np.sqrt(np.asarray(by_user.getnnz(axis=0), dtype=np.float64))
    targets = np.flatnonzero(norms > 0)
    width = min(count, n_pins)
    neighbours = np.full((len(targets), width), -1, dtype=np.int64)
    similarity = np.zeros((len(targets), width), dtype=np.float64)
    block = max(1, SCORE_BLOCK // max(n_pins, 1))
    for start in range(0, len(targets), block):
        items = targets[start : start + block]
        together = (by_pin[items] @ by_user).toarray()  # co-engagement counts (b, n_pins)
        denominator = norms[items][:, None] * norms[None, :]
        cosine = np.divide(together, denominator, out=np.zeros_like(together), where=denominator > 0)
        cosine[np.arange(len(items)), items] = 0.0  # a pin is not its own neighbour
        columns = top_k_columns(cosine, width)
        values = np.take_along_axis(cosine, columns, axis=1)
        rows = slice(start, start + len(items))
        neighbours[rows] = np.where(values > 0, columns, -1)
        similarity[rows] = np.where(values > 0, values, 0.0)
    return targets, neighbours, similarity


def _fitted(matrix: sp.csr_matrix, count: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(matrix, W) of an item-kNN with `count` neighbours per pin fitted on `matrix`."""
    return matrix, _weights(*neighbour_lists(matrix, count), count, matrix.shape[1])


def _weights(
    targets: np.ndarray, neighbours: np.ndarray, similarity: np.ndarray, count: int, n_pins: int
) -> sp.csr_matrix:
    """W[i, j] = sim(i, j) for i in the first `count` neighbours of j, so scores = X W."""
    kept = neighbours[:, :count]
    valid = kept >= 0
    target = np.broadcast_to(targets[:, None], kept.shape)[valid]
    return sp.csr_matrix((similarity[:, :count][valid], (kept[valid], target)), shape=(n_pins, n_pins))
