"""Choosing a baseline's hyperparameter on the validation window, and reporting the choice.

Only `split.train` and `split.val` are read: each candidate is fitted on train and scored by
recall@50 on the validation window (`build_eval_task(split, corpus, window="val")`). A baseline
passes its `FitContext.tuning_window(...)` here; under the refit protocol that is the unmerged
cut, and the baseline then refits the chosen value on train+val itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import numpy as np

from ebr.data.schema import Split
from ebr.evaluation.metrics import retrieval_metrics
from ebr.evaluation.task import EvalTask, build_eval_task

log = logging.getLogger(__name__)

TUNE_METRIC_K = 50
# the metrics.json key set to 1 when a tuned value sits at the edge of its grid (ebr.serving's
# `warnings/<name>` convention): `warnings/grid_edge[rank]`
GRID_EDGE_WARNING = "warnings/grid_edge[{name}]"

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
    name: str = "value",
) -> tuple[Param, dict[str, float], Model]:
    """Grid search on the validation window: fit each candidate on train, keep the best recall@k.

    Ties go to the earlier candidate. A choice at the smallest or largest value tried is logged as a
    warning (`grid_edge`): the best value may lie outside the grid.

    Args:
        split: the split.
        corpus: the pins retrieved from (the job's serving corpus).
        candidates: hyperparameter values, tried in order.
        fit_candidate: fits a model with one value on `split.train` and returns it.
        k: the recall cut-off.
        name: the hyperparameter's name in the warning (`model.grid` holds its values).

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
    edge = grid_edge(best[0], candidates)
    if edge is not None:
        log.warning(
            "%s: chose %s=%s, the %s value of its grid %s: the best may lie outside it; widen model.grid",
            type(best[2]).__name__,
            name,
            best[0],
            edge,
            list(candidates),
        )
    return best[0], scores, best[2]


def grid_edge(chosen: object, values: Sequence[object]) -> str | None:
    """ "smallest" or "largest" when `chosen` is the smallest or largest of several numeric grid values,
    else None (an interior value, or a grid of one value, which has no inside).

    Args:
        chosen: the value chosen.
        values: the values tried.
    """
    numbers = sorted({float(v) for v in values})  # type: ignore[arg-type]
    if len(numbers) < 2:
        return None
    if float(chosen) == numbers[0]:  # type: ignore[arg-type]
        return "smallest"
    if float(chosen) == numbers[-1]:  # type: ignore[arg-type]
        return "largest"
    return None


def tuning_metrics(name: str, chosen: object, validation: dict[str, float]) -> dict[str, float]:
    """A tuned hyperparameter and its validation scores, e.g. tune/rank, tune/recall@50[rank=32], and
    `warnings/grid_edge[rank]` = 1 when the chosen value is the smallest or largest one tried.

    Args:
        name: the hyperparameter ("rank", "neighbours").
        chosen: the value in use.
        validation: {value: validation recall@50}; empty when the value was not tuned.
    """
    metrics = {f"tune/recall@{TUNE_METRIC_K}[{name}={value}]": float(s) for value, s in validation.items()}
    metrics[f"tune/{name}"] = float(chosen)  # type: ignore[arg-type]
    if validation and grid_edge(chosen, list(validation)) is not None:
        metrics[GRID_EDGE_WARNING.format(name=name)] = 1.0
    return metrics
