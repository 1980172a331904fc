"""Popularity as a Retriever: the corpus's most engaged train pins, minus each user's own."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ebr.data.schema import Split
from ebr.evaluation.popularity import popularity_ranking
from ebr.evaluation.task import EvalTask


class Popularity:
    """Most-popular retriever (no hyperparameters; `tune` is accepted for a uniform config).

    Args:
        tune: ignored: popularity has nothing to tune.
    """

    def __init__(self, tune: bool = False) -> None:
        self.tune = tune
        self._train: pd.DataFrame | None = None

    def fit(self, split: Split, n_users: int, n_pins: int) -> None:
        """Remember `split.train`, whose engagement counts order the corpus.

        Args:
            split: the split (only `train` is read).
            n_users: number of user ids (unused).
            n_pins: number of pin ids (unused).
        """
        self._train = split.train

    def retrieve(self, task: EvalTask, k: int) -> np.ndarray:
        """Top-k most engaged corpus pins per user, the user's excluded pins removed.

        Args:
            task: users, corpus and exclusions.
            k: results per user.
        """
        if self._train is None:
            raise RuntimeError("Popularity.retrieve called before fit")
        return popularity_ranking(self._train, task, k)
