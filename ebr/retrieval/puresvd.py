"""PureSVD (Cremonesi et al., RecSys 2010): a truncated SVD of the binary user-item matrix.

Scores are the rank-r reconstruction U Σ V^T of the train interaction matrix X, computed as
(X V^T) V with V the top right singular vectors (scikit-learn's `TruncatedSVD.components_`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD

from ebr.data.schema import InteractionData, Split
from ebr.retrieval.protocol import FitContext
from ebr.retrieval.ranking import ExhaustiveRanking, interaction_matrix
from ebr.retrieval.tuning import tune_on_validation, tuning_metrics

log = logging.getLogger(__name__)

DEFAULT_RANKS = (4, 8, 16, 32, 64, 128, 256)


class PureSVD(ExhaustiveRanking):
    """PureSVD retriever.

    Args:
        rank: number of singular vectors (used as is when `tune` is false).
        tune: choose the rank from `grid` by validation recall@50 (never looking at test).
        grid: the ranks tried when tuning; ranks not below min(users, pins) with a train
            engagement are skipped.
        n_iter: power iterations of the randomized SVD.
        seed: random state of the randomized SVD.
    """

    def __init__(
        self,
        rank: int = 64,
        tune: bool = False,
        grid: Sequence[int] = DEFAULT_RANKS,
        n_iter: int = 7,
        seed: int = 0,
    ) -> None:
        for name, value in (("rank", rank), *((f"grid[{i}]", r) for i, r in enumerate(grid))):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"model.{name} must be a positive integer, got {value!r}")
        self.rank = int(rank)
        self.tune = tune
        self.grid = tuple(int(r) for r in grid)
        self.n_iter = n_iter
        self.seed = seed
        self.validation: dict[str, float] = {}
        self._user_factors: np.ndarray | None = None
        self._item_factors: np.ndarray | None = None

    def fit(self, data: InteractionData, split: Split, context: FitContext) -> None:
        """Fit on `split.train`; with `tune`, first pick the rank on the tuning window's `val`.

        Args:
            data: the data set (only its table sizes are read).
            split: the split (`split.test` is never read).
            context: the job's corpus and tuning window (`context.tuning_window(split)`).
        """
        n_users, n_pins = data.users.n_rows, data.pins.n_rows
        if not self.tune:
            self._fit_matrix(interaction_matrix(split, n_users, n_pins), self.rank)
            return
        tuning = context.tuning_window(split)
        matrix = interaction_matrix(tuning.split, n_users, n_pins)
        limit = _rank_bound(matrix)
        candidates = [r for r in self.grid if r < limit]
        if not candidates:
            raise ValueError(f"model.grid {list(self.grid)}: every rank is >= the matrix rank bound {limit}")

        def fit_candidate(rank: int) -> PureSVD:
            model = PureSVD(rank=rank, n_iter=self.n_iter, seed=self.seed)
            model._fit_matrix(matrix, rank)
            return model

        best, self.validation, model = tune_on_validation(
            tuning.split, tuning.corpus, candidates, fit_candidate, name="rank"
        )
        log.info("PureSVD: validation recall@50 by rank %s; chose rank %d", self.validation, best)
        self.rank = best
        if tuning.split is split:
            # the chosen model was fitted on split.train exactly as a refit would be, so keep it
            self._user_factors, self._item_factors = model._user_factors, model._item_factors
        else:
            # refit protocol: the rank chosen on train -> val, fitted again on train+val
            self._fit_matrix(interaction_matrix(split, n_users, n_pins), best)

    def _fit_matrix(self, matrix: sp.csr_matrix, rank: int) -> None:
        limit = _rank_bound(matrix)
        if rank >= limit:
            raise ValueError(
                f"model.rank={rank} must be below min(users, pins) with a train engagement = {limit}"
            )
        svd = TruncatedSVD(
            n_components=rank, algorithm="randomized", n_iter=self.n_iter, random_state=self.seed
        )
        self._user_factors = np.asarray(svd.fit_transform(matrix), dtype=np.float64)  # X V^T = U Σ
        self._item_factors = np.asarray(svd.components_.T, dtype=np.float64)  # V^T

    def score(self, users: np.ndarray) -> np.ndarray:
        """Reconstructed scores (U Σ V^T)[users] over every pin id.

        Args:
            users: user ids.

        Returns:
            (len(users), n_pins) float64 scores.
        """
        if self._user_factors is None or self._item_factors is None:
            raise RuntimeError("PureSVD.score called before fit")
        return self._user_factors[np.asarray(users, dtype=np.int64)] @ self._item_factors.T

    def own_metrics(self) -> dict[str, float]:
        """tune/rank, and with `tune` the validation recall@50 of every rank tried."""
        return tuning_metrics("rank", self.rank, self.validation)


def _rank_bound(matrix: sp.csr_matrix) -> int:
    """min(users, pins) counted over the rows and columns that hold a train engagement."""
    return int(min(np.count_nonzero(matrix.getnnz(axis=1)), np.count_nonzero(matrix.getnnz(axis=0))))
