"""A job's objective for a hyperparameter search: one metric of its `metrics.json`."""

from __future__ import annotations

import math
from pathlib import Path

from ebr.runs.files import is_finished, read_metrics


def job_objective(run_dir: Path, metric: str) -> float:
    """The value of `metric` a job recorded, or NaN when it did not finish (a failed trial).

    A skipped job (finished before, same config) returns the value it recorded then.

    Args:
        run_dir: the job's run directory.
        metric: a `metrics.json` key (`optimized_metric`, e.g. "recall@50").

    Raises:
        KeyError: naming the recorded metrics, when the finished job has no such metric.
    """
    if not is_finished(run_dir):
        return math.nan
    metrics = read_metrics(run_dir)
    if metric not in metrics:
        names = ", ".join(sorted(k for k in metrics if "/" not in k))
        raise KeyError(
            f"optimized_metric={metric!r} is not a metric of the job; its metrics include: {names}"
        )
    return float(metrics[metric])
