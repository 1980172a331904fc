"""The deltas figure of a sweep report: one panel per headline metric, deltas with interval bars."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any


def deltas_png(report: dict[str, Any]) -> bytes:
    """``deltas.png``: one panel per headline metric, each arm's relative delta with its t interval.

    Without a baseline the panels show per-arm means with ± std bars instead.

    Args:
        report: the document from `ebr.report.render.build_report`.

    Returns:
        The PNG file's bytes.
    """
    # the object-oriented Agg API leaves the process-wide matplotlib backend alone
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metrics = report["headline_metrics"] or ["(no metrics)"]
    fig = Figure(figsize=(1.0 + 3.6 * len(metrics), 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    has_baseline = report["baseline"] is not None
    arms = [arm for arm in report["arms"] if arm != report["baseline"]]
    for ax, metric in zip(axes, metrics):
        ax.set_title(metric, fontsize=10)
        rows = report["results"].get(metric, {})
        for i, arm in enumerate(arms):
            row = rows.get(arm)
            if row is None:
                continue
            if has_baseline:
                delta = row["delta"] or {}
                centre, ci = delta.get("rel_mean"), delta.get("t_ci")
                centre = None if centre is None else 100 * centre
                err = None if ci is None else [[centre - 100 * ci[0]], [100 * ci[1] - centre]]
            else:
                centre, err = row["mean"], None if row["std"] is None else [[row["std"]], [row["std"]]]
            if centre is None:
                ax.annotate("n/a", (i, 0), ha="center", va="bottom", fontsize=8)
                continue
            ax.errorbar([i], [centre], yerr=err, fmt="o", capsize=4, color="C0", mfc="C0" if err else "white")
        if has_baseline:
            ax.axhline(0.0, color="grey", linewidth=0.8, linestyle="--")
            ax.set_ylabel("relative delta vs baseline (%)", fontsize=8)
        else:
            ax.set_ylabel("mean ± std over seeds", fontsize=8)
        ax.set_xticks(range(len(arms)), [a.split("=", 1)[-1] if "," not in a else a for a in arms])
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        ax.set_xlim(-0.6, max(len(arms), 1) - 0.4)
    if has_baseline:
        subtitle = f"vs {report['baseline']}; bars: 95% paired t interval (hollow: n/a)"
    else:
        subtitle = "no baseline: per-arm means"
    title = report["technique"] or report["experiment_name"] or Path(report["sweep_dir"]).name
    fig.suptitle(f"{title}\n{subtitle}", fontsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
