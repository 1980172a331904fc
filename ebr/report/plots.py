"""The deltas figure of a sweep report: one panel per headline metric, deltas with interval bars."""

from __future__ import annotations

import io

from ebr.report.document import Report


def arm_tick(short: str) -> str:
    """An arm's label on a figure: the value alone when one key differs ("masknet")."""
    return short.split("=", 1)[-1] if "," not in short else short


def deltas_png(report: Report) -> bytes:
    """``deltas.png``: one panel per headline metric, each arm's relative delta with its t interval.

    Without a baseline the panels show per-arm means with ± std bars instead (written as
    ``means.png``, titled "means": there are no deltas). A clipped lower bound (-100%) is drawn as is.

    Args:
        report: the report.

    Returns:
        The PNG file's bytes.
    """
    # the object-oriented Agg API leaves the process-wide matplotlib backend alone
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metrics = list(report.headline_metrics) or ["(no metrics)"]
    fig = Figure(figsize=(1.0 + 3.6 * len(metrics), 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    has_baseline = report.baseline is not None
    arms = [arm for arm in report.arms if arm.label != report.baseline]
    for ax, metric in zip(axes, metrics):
        ax.set_title(metric, fontsize=10)
        rows = report.results.get(metric, {})
        for i, arm in enumerate(arms):
            row = rows.get(arm.label)
            if row is None:
                continue
            if has_baseline:
                delta = row.delta
                centre = None if delta is None or delta.rel_mean is None else 100 * delta.rel_mean
                ci = None if delta is None else delta.t_ci
                err = None
                if ci is not None and centre is not None:
                    err = [[centre - 100 * ci[0]], [100 * ci[1] - centre]]
            else:
                centre, err = row.mean, None if row.std is None else [[row.std], [row.std]]
            if centre is None:
                ax.annotate("n/a", (i, 0), ha="center", va="bottom", fontsize=8)
                continue
            ax.errorbar([i], [centre], yerr=err, fmt="o", capsize=4, color="C0", mfc="C0" if err else "white")
        if has_baseline:
            ax.axhline(0.0, color="grey", linewidth=0.8, linestyle="--")
            ax.set_ylabel("relative delta vs baseline (%)", fontsize=8)
        else:
            ax.set_ylabel("mean ± std over seeds", fontsize=8)
        ax.set_xticks(range(len(arms)), [arm_tick(arm.short) for arm in arms])
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        ax.set_xlim(-0.6, max(len(arms), 1) - 0.4)
    if report.baseline is not None:
        subtitle = f"vs {report.short(report.baseline)}; bars: 95% paired t interval (hollow: n/a)"
    else:
        subtitle = "no baseline: per-arm means ± std over seeds (no deltas)"
    fig.suptitle(f"{report.title()} (data: {report.data_label()})\n{subtitle}", fontsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def metric_bars_png(report: Report, metric: str) -> bytes:
    """One headline metric as bars: each arm's mean over seeds with ± std error bars.

    The baseline's bar is grey; the others are labelled with their relative delta when there is one.

    Args:
        report: the report.
        metric: one of the report's metrics.

    Returns:
        The PNG file's bytes.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = report.results.get(metric, {})
    arms = [arm for arm in report.arms if arm.label in rows and rows[arm.label].mean is not None]
    fig = Figure(figsize=(1.5 + 0.9 * max(len(arms), 1), 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for i, arm in enumerate(arms):
        row = rows[arm.label]
        baseline = arm.label == report.baseline
        err = None if row.std is None else [row.std]
        ax.bar([i], [row.mean], yerr=err, capsize=4, color="grey" if baseline else "C0")
        delta = row.delta
        if delta is not None and delta.rel_mean is not None:
            ax.annotate(f"{100 * delta.rel_mean:+.2f}%", (i, row.mean), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(arms)), [arm_tick(arm.short) for arm in arms])
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.set_ylabel(f"{metric}: mean ± std over seeds", fontsize=8)
    base = f"; grey: baseline {report.short(report.baseline)}" if report.baseline else ""
    ax.set_title(f"{metric} (n = {len(report.seeds)} seeds{base})", fontsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
