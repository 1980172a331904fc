"""Logging a sweep report into a wandb summary run of the sweep's group.

The run has job_type "report", sits in the group of the sweep's runs (their ``logger.group``, else
their ``experiment_name``) and keeps its files under the sweep directory. It is offline unless
``WANDB_MODE`` says otherwise, like every ebr run. It logs ``report/table`` (a wandb.Table of the
report's rows, `TABLE_COLUMNS`), ``report/deltas`` (the deltas figure) and per headline metric
``report/bars/<metric>`` (each arm's mean with ± std error bars). Its config column ``arm`` is
"report" (tags ``experiment:<name>``, ``arm:report``), so a workspace grouping runs by arm shows it
apart from the arms.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from ebr.report.document import Report
from ebr.report.plots import metric_bars_png
from ebr.runs import run_tags

DEFAULT_PROJECT = "ebr"
REPORT_JOB_TYPE = "report"
TABLE_KEY = "report/table"
DELTAS_KEY = "report/deltas"
BARS_PREFIX = "report/bars/"
TABLE_COLUMNS = [
    "metric",
    "arm",
    "is_baseline",
    "headline",
    "n",
    "mean",
    "std",
    "rel_delta",
    "t_ci_low",
    "t_ci_high",
    "bootstrap_ci_low",
    "bootstrap_ci_high",
    "p_value",
    "n_pairs",
    "paper",
    "arm_short",
]


def table_rows(report: Report) -> list[list[Any]]:
    """One row per (metric, arm) of the report, in `TABLE_COLUMNS` order (None where n/a).

    The arm column is the arm's full label, the job type of its runs, so the table joins with them.

    Args:
        report: the report.
    """
    rows = []
    headline = set(report.headline_metrics)
    for metric, arms in report.results.items():
        for arm, row in arms.items():
            delta = row.delta
            t_ci = (None, None) if delta is None or delta.t_ci is None else delta.t_ci
            boot = (None, None) if delta is None or delta.bootstrap_ci is None else delta.bootstrap_ci
            rows.append(
                [
                    metric,
                    arm,
                    row.is_baseline,
                    metric in headline,
                    row.n,
                    row.mean,
                    row.std,
                    None if delta is None else delta.rel_mean,
                    t_ci[0],
                    t_ci[1],
                    boot[0],
                    boot[1],
                    None if delta is None else delta.p_value,
                    None if delta is None else delta.n_pairs,
                    row.paper,
                    report.short(arm),
                ]
            )
    return rows


def log_report(report: Report, sweep_dir: Path, png: Path, project: str | None = None) -> Path:
    """Log the report table (wandb.Table) and the delta plot (wandb.Image) into a summary run.

    Args:
        report: the report.
        sweep_dir: the sweep directory; the run's files go under ``sweep_dir/wandb``.
        png: the ``deltas.png`` written for this report.
        project: wandb project; defaults to ``logger.project`` of the runs or "ebr".

    Returns:
        The local directory of the wandb run.
    """
    import wandb

    mode = os.environ.get("WANDB_MODE", "offline")
    meta = report.meta
    name = f"report-{meta.experiment_name or Path(meta.sweep_dir).name}"
    run = wandb.init(
        project=project or meta.wandb_project or DEFAULT_PROJECT,
        group=meta.wandb_group or meta.experiment_name,
        job_type=REPORT_JOB_TYPE,
        tags=list(run_tags(meta.experiment_name, REPORT_JOB_TYPE)),
        name=name,
        dir=str(sweep_dir),
        mode=mode,
        config={
            "arm": REPORT_JOB_TYPE,
            "sweep_dir": meta.sweep_dir,
            "baseline": report.baseline,
            "arms": report.arm_labels,
            "seeds": list(report.seeds),
            "technique": meta.technique,
            "data": [entry.name for entry in report.data],
            "control": meta.control,
            "git_commit": meta.git_commit,
            "headline_metrics": list(report.headline_metrics),
        },
        settings=wandb.Settings(silent=True),
        reinit="create_new",
    )
    try:
        table = wandb.Table(columns=TABLE_COLUMNS, data=table_rows(report), allow_mixed_types=True)
        logged: dict[str, Any] = {TABLE_KEY: table, DELTAS_KEY: wandb.Image(str(png))}
        for metric in report.headline_metrics:
            if metric in report.results:
                logged[f"{BARS_PREFIX}{metric}"] = wandb.Image(_image(metric_bars_png(report, metric)))
        run.log(logged)
        run.summary["report/n_failed"] = report.n_failed
        run.summary["report/n_missing"] = report.n_missing
        for metric in report.headline_metrics:
            for arm, row in report.results.get(metric, {}).items():
                if row.delta is not None and row.delta.rel_mean is not None:
                    run.summary[f"rel_delta/{metric}/{arm}"] = row.delta.rel_mean
        run_dir = Path(run.dir).parent
    finally:
        run.finish()
    return run_dir


def _image(png: bytes) -> Any:
    """A PNG's bytes as the PIL image wandb.Image takes."""
    from PIL import Image

    return Image.open(io.BytesIO(png))
