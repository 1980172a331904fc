"""The one protocol every model follows: fit on the split, then retrieve for the evaluation task."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ebr.data.schema import InteractionData, Split
from ebr.evaluation.task import EvalTask


@dataclass(frozen=True)
class FitContext:
    """What a job gives a retriever besides the data.

    Args:
        corpus: the serving corpus (sorted pin ids), chosen once per job: e.g. the pool random
            negatives are drawn from, and the pins tuning retrieves from.
        run_dir: where a retriever writes what it saves (the two-tower `model.pt`).
        loggers: Lightning loggers for training curves (empty when nothing is logged, e.g. on
            ranks other than 0).
        seed: the job's training seed.
    """

    corpus: np.ndarray
    run_dir: Path
    loggers: list[Any] = field(default_factory=list)
    seed: int = 0


@runtime_checkable
class Retriever(Protocol):
    """A model that retrieves pins for the users of an evaluation task."""

    def fit(self, data: InteractionData, split: Split, context: FitContext) -> None:
        """Fit on `split.train` (and, when tuning, choose hyperparameters on `split.val`).

        Args:
            data: the data set (feature tables; `data.events` must not be read past the split).
            split: the time split; `split.test` must never be read.
            context: the job's corpus, run directory and loggers.
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

    def own_metrics(self) -> dict[str, float]:
        """The retriever's own figures: training statistics, tuning choices and scores (tune/...),
        the serving index's recall against exact search. Empty when it has none."""
        ...
