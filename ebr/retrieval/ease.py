"""EASE^R (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019).

An item-item linear model with a closed form: on the binary train matrix X,

    P = (X^T X + λ I)^-1,    B = I - P · diag(1 / diag(P))    (so B_jj = 0),

and a user's scores are their row of X B. λ is the L2 weight.

The matrix is built over the pins with a train engagement only: a pin without one has a zero
column in X, so in the full closed form its row and column of B are zero and its scores are 0,
which is what `score` returns for it. The restriction changes no score and keeps the dense
N x N matrices at N = the engaged pins (4,606 on ml-latest-small's per-user train window, about
5,000 under refit; 9,724 movies in all). About four such float64 matrices are alive at once
while tuning (the Gram matrix, the one being inverted, its inverse, the best B so far), 4 · 8 N²
bytes: 0.7 GB at N = 4,606, 3.2 GB at the default limit `max_items` = 10,000, above which `fit`
refuses rather than run out of memory.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from ebr.data.schema import InteractionData, Split
from ebr.retrieval.protocol import FitContext
from ebr.retrieval.ranking import ExhaustiveRanking, interaction_matrix
from ebr.retrieval.tuning import tune_on_validation, tuning_metrics

log = logging.getLogger(__name__)

DEFAULT_LAMBDAS = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
# engaged pins above which the dense N x N float64 matrices are refused (see the module docstring)
MAX_ITEMS = 10_000


class EASE(ExhaustiveRanking):
    """EASE^R retriever.

    Args:
        l2: λ, the L2 weight on B (used as is when `tune` is false); > 0.
        tune: choose λ from `grid` by validation recall@50 (never looking at test).
        grid: the λ values tried when tuning, in order (ties go to the earlier one).
        max_items: the most pins with a train engagement the dense matrices may have.
    """

    def __init__(
        self,
        l2: float = 500.0,
        tune: bool = False,
        grid: Sequence[float] = DEFAULT_LAMBDAS,
        max_items: int = MAX_ITEMS,
    ) -> None:
        self.l2 = _positive_number("l2", l2)
        self.grid = tuple(_positive_number(f"grid[{i}]", value) for i, value in enumerate(grid))
        if isinstance(max_items, bool) or not isinstance(max_items, int | np.integer) or max_items < 1:
            raise ValueError(f"model.max_items must be a positive integer, got {max_items!r}")
        self.tune = tune
        self.max_items = int(max_items)
        self.validation: dict[str, float] = {}
        self._matrix: sp.csr_matrix | None = None  # X restricted to `_items` (n_users, N)
        self._items: np.ndarray | None = None  # pin ids of B's rows and columns
        self._weights: np.ndarray | None = None  # B (N, N)
        self._n_pins = 0

    def fit(self, data: InteractionData, split: Split, context: FitContext) -> None:
        """Fit on `split.train`; with `tune`, first pick λ on the tuning window's `val`.

        Args:
            data: the data set (only its table sizes are read).
            split: the split (`split.test` is never read).
            context: the job's corpus and tuning window (`context.tuning_window(split)`).

        Raises:
            ValueError: when more than `max_items` pins have a train engagement.
        """
        n_users, n_pins = data.users.n_rows, data.pins.n_rows
        if not self.tune:
            self._set(*self._gram(interaction_matrix(split, n_users, n_pins)), self.l2, n_pins)
            return
        if not self.grid:
            raise ValueError("model.grid is empty: tuning needs at least one λ")
        tuning = context.tuning_window(split)
        matrix, items, gram = self._gram(interaction_matrix(tuning.split, n_users, n_pins))

        def fit_candidate(l2: float) -> EASE:
            model = EASE(l2=l2, max_items=self.max_items)
            model._set(matrix, items, gram, l2, n_pins)
            return model

        best, self.validation, model = tune_on_validation(
            tuning.split, tuning.corpus, self.grid, fit_candidate, name="lambda"
        )
        log.info(
            "EASE: validation recall@50 by lambda %s; chose %s (%d items)", self.validation, best, len(items)
        )
        self.l2 = best
        if tuning.split is split:
            # the chosen model was fitted on split.train exactly as a refit would be, so keep it
            self._matrix, self._items, self._weights = model._matrix, model._items, model._weights
            self._n_pins = n_pins
        else:
            # refit protocol: the λ chosen on train -> val, fitted again on train+val
            del model, gram
            self._set(*self._gram(interaction_matrix(split, n_users, n_pins)), best, n_pins)

    def _gram(self, matrix: sp.csr_matrix) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
        """(X over the engaged pins, those pin ids, the dense Gram matrix X^T X)."""
        items = np.flatnonzero(matrix.getnnz(axis=0))
        if len(items) > self.max_items:
            raise ValueError(
                f"EASE: {len(items)} pins have a train engagement, over model.max_items={self.max_items}: "
                f"B is a dense {len(items)} x {len(items)} float64 matrix "
                f"({8 * len(items) ** 2 / 1e9:.1f} GB, about 4 alive at once); raise model.max_items "
                "only if the memory allows"
            )
        restricted = matrix[:, items].tocsr()
        gram = np.asarray((restricted.T @ restricted).toarray(), dtype=np.float64)
        return restricted, items, gram

    def _set(
        self, matrix: sp.csr_matrix, items: np.ndarray, gram: np.ndarray, l2: float, n_pins: int
    ) -> None:
        self._matrix, self._items, self._n_pins = matrix, items, n_pins
        self._weights = closed_form(gram, l2)

    def score(self, users: np.ndarray) -> np.ndarray:
        """Scores (X B)[users] over every pin id (0 for pins without a train engagement).

        Args:
            users: user ids.

        Returns:
            (len(users), n_pins) float64 scores.
        """
        if self._matrix is None or self._items is None or self._weights is None:
            raise RuntimeError("EASE.score called before fit")
        rows = self._matrix[np.asarray(users, dtype=np.int64)]
        scores = np.zeros((rows.shape[0], self._n_pins), dtype=np.float64)
        scores[:, self._items] = rows @ self._weights
        return scores

    def own_metrics(self) -> dict[str, float]:
        """tune/lambda, and with `tune` the validation recall@50 of every λ tried."""
        return tuning_metrics("lambda", self.l2, self.validation)


def closed_form(gram: np.ndarray, l2: float) -> np.ndarray:
    """B = I - P diag(1 / diag(P)), P = (gram + l2 I)^-1, with B's diagonal exactly 0.

    Args:
        gram: X^T X (N, N); left unchanged.
        l2: λ > 0 (it makes gram + λ I positive definite, so the inverse exists).
    """
    regularised = gram.copy()
    regularised[np.diag_indices_from(regularised)] += l2
    inverse = np.linalg.inv(regularised)
    del regularised
    # B_ij = -P_ij / P_jj off the diagonal, in place to keep one N x N matrix
    inverse /= -np.diag(inverse).copy()[None, :]
    inverse[np.diag_indices_from(inverse)] = 0.0
    return inverse


def _positive_number(name: str, value: object) -> float | int:
    """A positive real from the config, kept an int when integral so tune keys read `lambda=500`."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"model.{name} must be a positive number, got {value!r}")
    number = float(value)
    if not np.isfinite(number) or number <= 0:
        raise ValueError(f"model.{name} must be a positive number, got {value!r}")
    return int(number) if number.is_integer() else number
