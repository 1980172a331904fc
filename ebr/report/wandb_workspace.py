"""A saved wandb workspace per sweep, built with the ``wandb-workspaces`` package, without network.

The workspace shows the sweep's runs only (a runset filtered to the sweep's wandb group), grouped
by arm (the runs' ``arm`` config column, ebr.runs.dashboard), in three sections:

- "Training curves": ``train/loss`` and ``val/loss`` line plots, one line per arm (mean over
  seeds, ± std band);
- "Headline metrics": one bar panel per headline metric (summary value, the same name as in
  ``metrics.json``), one bar per arm (mean over seeds, ± std);
- "Report": the report run's ``report/table``, its deltas figure and per-metric bar images, and a
  note with the sweep's baseline and seeds.

Offline (the default) the definition is written to ``SWEEP_DIR/wandb_workspace.json``: the view
wandb stores, as JSON. ``python -m ebr.report.wandb_workspace SWEEP_DIR/wandb_workspace.json``
saves it later (after ``wandb login``) and prints its URL.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ebr.report.document import Report
from ebr.report.wandb_summary import BARS_PREFIX, DELTAS_KEY, TABLE_KEY
from ebr.runs import METRICS_FILE, column_name, write_json_atomic

WORKSPACE_FILE = "wandb_workspace.json"
WORKSPACE_FORMAT = "ebr-wandb-workspace/1"
CURVES = ("train/loss", "val/loss")
TRAINING_SECTION, METRICS_SECTION, REPORT_SECTION = "Training curves", "Headline metrics", "Report"
ARM_COLUMN = "arm"


def parse_target(text: str) -> tuple[str, str]:
    """``ENTITY/PROJECT`` as (entity, project).

    Raises:
        ValueError: when the text is not two non-empty names joined by one slash.
    """
    entity, sep, project = text.partition("/")
    if not sep or not entity or not project or "/" in project:
        raise ValueError(f"--wandb-workspace expects ENTITY/PROJECT, got {text!r}")
    return entity, project


def sweep_group(report: Report) -> str:
    """The wandb group of the sweep's runs (their ``logger.group``, else the experiment name).

    Raises:
        ValueError: when the report names neither: the runset could not be filtered to the sweep.
    """
    group = report.meta.wandb_group or report.meta.experiment_name
    if not group:
        raise ValueError(f"{report.meta.sweep_dir}: the runs record no wandb group or experiment name")
    return group


def build_workspace(report: Report, entity: str, project: str, top_level_keys: Sequence[str] = ()) -> Any:
    """The workspace of a sweep (a ``wandb_workspaces.workspaces.Workspace``); no network is used.

    Args:
        report: the sweep's report.
        entity: wandb entity (team or user) that owns the workspace.
        project: wandb project of the runs.
        top_level_keys: the runs' top-level config keys, so the pinned arm columns carry the names
            the runs logged them under (ebr.runs.dashboard.column_name).
    """
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    group = sweep_group(report)
    curves = [
        wr.LinePlot(
            title=f"{name} per arm", x="Step", y=[name], groupby_aggfunc="mean", groupby_rangefunc="stddev"
        )
        for name in CURVES
    ]
    bars = [
        wr.BarPlot(
            title=f"{metric} per arm (mean ± std over seeds)",
            metrics=[metric],
            orientation="v",
            groupby_aggfunc="mean",
            groupby_rangefunc="stddev",
        )
        for metric in report.headline_metrics
    ]
    report_panels = [
        # the default size: this release of wandb-workspaces reads a summary table's layout back as
        # the default, so a custom one would not survive the offline file
        wr.WeavePanelSummaryTable(table_name=TABLE_KEY),
        wr.MediaBrowser(
            title="deltas and per-metric bars",
            media_keys=[DELTAS_KEY, *(f"{BARS_PREFIX}{metric}" for metric in report.headline_metrics)],
        ),
        wr.MarkdownPanel(markdown=_note(report, group)),
    ]
    taken = set(top_level_keys)
    columns = [f"config:{ARM_COLUMN}", *(f"config:{column_name(key, taken)}" for key in report.arm_keys)]
    columns += [f"summary:{metric}" for metric in report.headline_metrics]
    return ws.Workspace(
        entity=entity,
        project=project,
        name=f"ebr {group}: {report.title()}"[:120],
        sections=[
            ws.Section(name=TRAINING_SECTION, panels=curves, is_open=True),
            ws.Section(name=METRICS_SECTION, panels=bars, is_open=True),
            ws.Section(name=REPORT_SECTION, panels=report_panels, is_open=True),
        ],
        settings=ws.WorkspaceSettings(max_runs=max(100, report.n_runs + 1)),
        runset_settings=ws.RunsetSettings(
            filters=[ws.Metric("Group") == group],
            groupby=[ws.Config(ARM_COLUMN)],
            pinned_columns=list(dict.fromkeys(columns)),
        ),
    )


def _note(report: Report, group: str) -> str:
    baseline = report.short(report.baseline) if report.baseline else "none (per-arm means only)"
    return (
        f"**{report.title()}**, wandb group `{group}`: {len(report.arms)} arms x {len(report.seeds)} seeds "
        f"({report.n_finished} of {report.n_runs} runs finished). Baseline: {baseline}. Bars and curves: "
        f"mean ± std over seeds per arm; metric names as in each run's {METRICS_FILE}. "
        "The table holds the report's seed-paired deltas with 95% intervals "
        f"(sweep: `{report.meta.sweep_dir}`)."
    )


def workspace_json(workspace: Any) -> dict[str, Any]:
    """The workspace as the JSON object `load_workspace` reads: the view wandb would store."""
    view = workspace._to_model()  # the package's own serialisation: what Workspace.save() uploads
    view_json = json.loads(view.model_dump_json(by_alias=True, exclude_none=True))
    return {"format": WORKSPACE_FORMAT, "view": view_json}


def write_workspace(workspace: Any, sweep_dir: Path) -> Path:
    """Write ``SWEEP_DIR/wandb_workspace.json`` (temporary name, then renamed)."""
    return write_json_atomic(Path(sweep_dir) / WORKSPACE_FILE, workspace_json(workspace))


def load_workspace(path: Path) -> Any:
    """The workspace a `write_workspace` file holds.

    Raises:
        ValueError: naming the file, when it is not such a file.
    """
    from wandb_workspaces.workspaces import Workspace, internal

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot be read as a workspace file ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != WORKSPACE_FORMAT or "view" not in data:
        raise ValueError(
            f"{path}: not an ebr workspace file (expected format {WORKSPACE_FORMAT!r} and a 'view')"
        )
    try:
        view = internal.View.model_validate(data["view"])
    except Exception as exc:  # pydantic's ValidationError, naming the field
        raise ValueError(f"{path}: the 'view' is not a wandb workspace view ({exc})") from exc
    return Workspace._from_model(view)


def online() -> bool:
    """Whether runs and workspaces go to the server now (``WANDB_MODE=online``)."""
    return os.environ.get("WANDB_MODE", "offline") == "online"


def save_workspace(workspace: Any) -> str:
    """Save the workspace to wandb (network and credentials needed); returns its URL."""
    from ebr.report.wandb_sync import require_credentials

    require_credentials()
    return str(workspace.save().url)


def main(argv: list[str] | None = None) -> int:
    """``python -m ebr.report.wandb_workspace FILE``: save a written workspace file, print its URL.

    Args:
        argv: arguments without the program name; defaults to ``sys.argv[1:]``.
    """
    parser = argparse.ArgumentParser(
        prog="python -m ebr.report.wandb_workspace",
        description=f"Save a sweep's {WORKSPACE_FILE} (written by ebr-report --wandb-workspace) to wandb.",
    )
    parser.add_argument("file", type=Path, help=f"SWEEP_DIR/{WORKSPACE_FILE}")
    args = parser.parse_args(argv)
    try:
        workspace = load_workspace(args.file)
        url = save_workspace(workspace)
    except Exception as exc:
        print(f"wandb workspace: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"wandb workspace saved: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
