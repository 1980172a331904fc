"""Popularity as a Retriever: the corpus's most engaged train pins, minus each user's own.

The counts are `ebr.serving.score_terms.TrainingEngagements`, the same counter the served
popularity prior reads: every click and repin row of `split.train` counts (a user engaging twice
with a pin counts twice); under the refit protocol `split.train` is train+val.

Ties: pins with equal counts are ranked by ascending pin id (the lower id first). Pin ids are the
loaders' re-indexing (MovieLens: the order of the original movie ids), so the rule is
deterministic and independent of the order of the events, and a job's ranking never depends on
its seed.
"""

from __future__ import annotations

import numpy as np

from ebr.data.csr import first_kept
from ebr.data.schema import InteractionData, Split
from ebr.evaluation.task import EvalTask
from ebr.retrieval.protocol import FitContext, FittedPerJob
from ebr.serving.score_terms import TrainingEngagements


class Popularity(FittedPerJob):
    """Most-popular retriever (no hyperparameters; `tune` is accepted for a uniform config).

    Ranks corpus pins by train engagement count, descending, ties to the lower pin id.

    Args:
        tune: ignored: popularity has nothing to tune.
    """

    def __init__(self, tune: bool = False) -> None:
        self.tune = tune
        self._engagements: TrainingEngagements | None = None

    def fit(self, data: InteractionData, split: Split, context: FitContext) -> None:
        """Count `split.train`'s engagements per pin.

        Args:
            data: the data set (unused).
            split: the split (only `train` is read).
            context: the job's context (unused).
        """
        self._engagements = TrainingEngagements.from_split(split)

    def order(self, corpus: np.ndarray) -> np.ndarray:
        """Corpus pin ids sorted by training engagements, most engaged first (ties: lower id).

        Args:
            corpus: sorted corpus pin ids.
        """
        if self._engagements is None:
            raise RuntimeError("Popularity.order called before fit")
        counts = self._engagements.counts(corpus)
        # lexsort's last key is primary: count descending, then id ascending
        return corpus[np.lexsort((corpus, -counts))]

    def retrieve(self, task: EvalTask, k: int) -> np.ndarray:
        """Top-k most engaged corpus pins per user (ties: lower pin id), excluded pins removed.

        Args:
            task: users, corpus and exclusions.
            k: results per user.

        Returns:
            (len(task.user_ids), k) int64 pin ids, -1 padded when the corpus runs out.
        """
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        order = self.order(task.corpus)
        n_users = len(task.user_ids)
        extra = int(task.exclude.lengths().max()) if task.exclude is not None and n_users else 0
        head = order[: k + extra]
        if len(head) == 0:
            return np.full((n_users, k), -1, dtype=np.int64)
        candidates = np.broadcast_to(head, (n_users, len(head)))
        keep = np.ones(candidates.shape, dtype=bool)
        if task.exclude is not None:
            keep = ~task.exclude.contains(candidates)
        columns, valid = first_kept(keep, k)
        return np.where(valid, head[np.minimum(columns, len(head) - 1)], -1).astype(np.int64)

    def own_metrics(self) -> dict[str, float]:
        return {}
