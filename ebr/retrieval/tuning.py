"""Choosing a baseline's hyperparameter on the validation window, and reporting the choice.

Only `split.train` and `split.val` are read: each candidate is fitted on train and scored by
recall@50 on the validation window (`build_eval_task(split, corpus, window="val")`). A baseline
passes its `FitContext.tuning_window(...)` here; under the refit protocol that is the unmerged
cut, and the baseline then refits the chosen value on train+val itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import numpy as np

from ebr.data.schema import Split
from ebr.evaluation.metrics import retrieval_metrics
from ebr.evaluation.task import EvalTask, build_eval_task

TUNE_METRIC_K = 50

Param = TypeVar("Param")


class Ranker(Protocol):
    def retrieve(self, task: EvalTask, k: int) -> np.ndarray: ...


Model = TypeVar("Model", bound=Ranker)


def tune_on_validation(
    split: Split,
    corpus: np.ndarray,
    candidates: Sequence[Param],
    fit_candidate: Callable[[Param], Model],
    k: int = TUNE_METRIC_K,
) -> tuple[Param, dict[str, float], Model]:
    """Grid search on the validation window: fit each candidate on train, keep the best recall@k.

    Ties go to the earlier candidate.

    Args:
        split: the split.
        corpus: the pins retrieved from (the job's serving corpus).
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
    task = build_eval_task(split, corpus, window="val", exclude_train=True)
    scores: dict[str, float] = {}
    best: tuple[Param, float, Model] | None = None
    for value in candidates:
        model = fit_candidate(value)
        recall = retrieval_metrics(model.retrieve(task, k), task.relevant, [k])[f"recall@{k}"]
        scores[str(value)] = recall
        if best is None or recall > best[1]:
            best = (value, recall, model)
    assert best is not None
    return best[0], scores, best[2]


def tuning_metrics(name: str, chosen: object, validation: dict[str, float]) -> dict[str, float]:
    """A tuned hyperparameter and its validation scores, e.g. tune/rank, tune/recall@50[rank=32].

    Args:
        name: the hyperparameter ("rank", "neighbours").
        chosen: the value in use.
        validation: {value: validation recall@50}; empty when the value was not tuned.
    """
    metrics = {f"tune/recall@{TUNE_METRIC_K}[{name}={value}]": float(s) for value, s in validation.items()}
    metrics[f"tune/{name}"] = float(chosen)  # type: ignore[arg-type]
    return metrics
