"""The ideal ranker as a Retriever: corpus pins ranked by the world's own true engagement score.

Only a synthetic world knows how its users engage (`InteractionData.truth`, a `SyntheticTruth`), so
`model=oracle` runs on synthetic data only. It bounds what any learned retriever can reach on the
same task, and it is the ranker of `scripts/headroom.py`, which also ranks by truths with a part of
the taste removed (`truth_top_k` takes any `SyntheticTruth`, and any pool of pins).

Ranking is `ebr.retrieval.ranking.rank_corpus`: each user's excluded pins removed, ties to the lower
pin id, -1 padded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from ebr.data.csr import Csr
from ebr.data.schema import InteractionData, Split
from ebr.data.world.truth import SyntheticTruth
from ebr.evaluation.task import EvalTask
from ebr.retrieval.protocol import FitContext, FittedPerJob
from ebr.retrieval.ranking import rank_corpus

# (users chunk) -> (chunk, len(pool)) mask of the pool pins each user may be shown
Allow = Callable[[np.ndarray], np.ndarray]


def within_pool(task: EvalTask, pool: np.ndarray) -> EvalTask:
    """The task retrieving from `pool` instead of its corpus: exclusions off the pool dropped.

    Args:
        task: users, exclusions and serving time.
        pool: sorted, distinct candidate pin ids.
    """
    exclude = task.exclude
    if exclude is not None:
        # rank_corpus finds an excluded pin's column by searchsorted: only pool pins may be listed
        keep = np.isin(exclude.values, pool)
        exclude = Csr.from_pairs(exclude.row_of_value()[keep], exclude.values[keep], exclude.n_rows)
    return dataclasses.replace(task, corpus=np.asarray(pool, dtype=np.int64), exclude=exclude)


def truth_scores(
    truth: SyntheticTruth, pool: np.ndarray, timestamp: float, allow: Allow | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    """users (B,) -> (B, len(pool)) true scores at `timestamp`, -inf where `allow` is False.

    Args:
        truth: the truth ranked by.
        pool: sorted candidate pin ids.
        timestamp: serving time in seconds.
        allow: optional per-user mask of allowed pool pins.
    """

    def score(users: np.ndarray) -> np.ndarray:
        scores = truth.score_matrix(users, pool, timestamp)
        if allow is not None:
            scores[~allow(users)] = -np.inf
        return scores

    return score


def truth_top_k(
    truth: SyntheticTruth, task: EvalTask, pool: np.ndarray, depth: int, allow: Allow | None = None
) -> np.ndarray:
    """Per task user, the `depth` pins of `pool` with the highest score of `truth`, best first.

    Args:
        truth: the truth ranked by (the world's own, or one with a part of its taste removed).
        task: users, exclusions and serving time.
        pool: sorted, distinct candidate pin ids (e.g. `task.corpus`).
        depth: results per user.
        allow: optional (users chunk) -> (chunk, len(pool)) mask of allowed pins.

    Returns:
        (len(task.user_ids), depth) int64 pin ids, excluded and disallowed pins removed, -1 padded.
    """
    score = truth_scores(truth, pool, task.timestamp, allow)
    # only the pool is scored: the other pins can never be retrieved
    return rank_corpus(score, within_pool(task, pool), depth, corpus_columns=True)


class Oracle(FittedPerJob):
    """The ideal retriever of a synthetic world: the corpus ranked by the true engagement score.

    Nothing is learned: `fit` only takes the world's truth, so its figures are the ceiling of any
    retriever's on the same task (`tune` is accepted for a uniform config).

    Args:
        tune: ignored: the oracle has nothing to tune.
    """

    def __init__(self, tune: bool = False) -> None:
        self.tune = tune
        self._truth: SyntheticTruth | None = None

    def fit(self, data: InteractionData, split: Split, context: FitContext) -> None:
        """Take the world's true engagement model.

        Args:
            data: the data set; `data.truth` must be a synthetic world's truth.
            split: the split (unused: the truth is not learned from it).
            context: the job's context (unused).

        Raises:
            ValueError: the data has no true engagement model (real data).
        """
        if data.truth is None:
            raise ValueError(
                f"model=oracle ranks by the world's true engagement model, and data {data.name!r} has"
                " none (data.truth is None): use it on synthetic data (data=synthetic...)"
            )
        if not isinstance(data.truth, SyntheticTruth):
            raise ValueError(
                f"model=oracle scores with a SyntheticTruth, got {type(data.truth).__name__} in data.truth"
            )
        self._truth = data.truth

    def retrieve(self, task: EvalTask, k: int) -> np.ndarray:
        """Top-k corpus pins by true score at the task's serving time, excluded pins removed.

        Args:
            task: users, corpus and exclusions.
            k: results per user.
        """
        if self._truth is None:
            raise RuntimeError("Oracle.retrieve called before fit")
        return truth_top_k(self._truth, task, task.corpus, k)

    def own_metrics(self) -> dict[str, float]:
        return {}
