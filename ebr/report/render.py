"""``report.json``, ``report.md`` and ``deltas.png`` of a sweep, each written atomically.

A sweep without a baseline has no deltas: its figure of per-arm means is ``means.png``.

All three are written from one `Report`, so they always carry the same numbers. Tables name arms by
their short label (the keys that differ between arms); the header lists the full labels, which are
the jobs' wandb job types.
"""

from __future__ import annotations

from pathlib import Path

from ebr.report.code import code_label
from ebr.report.document import REPORT_JSON, Problem, Report, ResultRow
from ebr.report.plots import deltas_png
from ebr.report.render_worlds import claim_lines, fmt_ci, fmt_pct, method_lines, world_tables
from ebr.report.stats import CLIP_NOTE, MIN_BOOTSTRAP_PAIRS
from ebr.runs import write_bytes_atomic, write_text_atomic

REPORT_MD = "report.md"
DELTAS_PNG = "deltas.png"
MEANS_PNG = "means.png"
CLIP_MARK = "*"

__all__ = [
    "DELTAS_PNG",
    "MEANS_PNG",
    "REPORT_JSON",
    "REPORT_MD",
    "fmt_ci",
    "fmt_pct",
    "render_markdown",
    "write_report",
]


def fmt_number(value: float | None) -> str:
    """A metric value for a table: 5 significant digits, plain digits for large counts, "n/a" for None."""
    if value is None:
        return "n/a"
    if abs(value) >= 1e5:
        return f"{value:.0f}"
    return f"{value:.5g}"


def fmt_delta_ci(ci: tuple[float, float] | None, clipped: bool) -> str:
    """`fmt_ci`, with the lower bound marked when it was clipped at -100%."""
    if ci is None or not clipped or ci[0] > -1.0:
        return fmt_ci(ci)
    return f"[{fmt_pct(ci[0])}{CLIP_MARK}, {fmt_pct(ci[1])}]"


def _bootstrap_cell(delta, min_pairs: int) -> str:
    if delta.bootstrap_ci is None and delta.n_pairs < min_pairs:
        return f"n/a (n < {min_pairs})"
    return fmt_delta_ci(delta.bootstrap_ci, delta.clipped)


def fmt_p(value: float | None) -> str:
    """A p-value with 2 significant digits, "n/a" for None."""
    return "n/a" if value is None else f"{value:.2g}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _metric_table(report: Report, metric: str, with_bootstrap: bool) -> list[str]:
    header = ["arm", "n", "mean ± std", "Δ vs baseline", "95% CI (t)"]
    header += ["95% CI (bootstrap)"] if with_bootstrap else []
    header += ["p", "pairs", "paper (reported)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for arm in report.arm_order():
        row = report.results[metric][arm.label]
        spread = fmt_number(row.mean) + ("" if row.std is None else f" ± {fmt_number(row.std)}")
        delta = row.delta
        if row.is_baseline or delta is None:
            cells = ["baseline" if row.is_baseline else "", ""] + [""] * with_bootstrap + ["", ""]
        else:
            cells = [fmt_pct(delta.rel_mean), fmt_delta_ci(delta.t_ci, delta.clipped)]
            cells += [_bootstrap_cell(delta, MIN_BOOTSTRAP_PAIRS)] if with_bootstrap else []
            cells += [fmt_p(delta.p_value), str(delta.n_pairs)]
        name = f"**{arm.short}**" if row.is_baseline else arm.short
        values = [name, str(row.n), spread, *cells, row.paper or ""]
        lines.append("| " + " | ".join(_cell(v) for v in values) + " |")
    return lines


def _problem_line(kind: str, problem: Problem, report: Report) -> str:
    seed = "" if problem.seed is None else f", seed={problem.seed}"
    # an arm none of whose jobs has a folder is only in the sweep's grid: its full label then
    arm = report.short(problem.arm) if problem.arm in report.arm_labels else problem.arm
    return f"- {kind}: `{problem.name}` ({arm}{seed}): {problem.reason}"


def _problem_lines(report: Report) -> list[str]:
    lines = [f"## Failed and missing runs: {report.n_failed} failed, {report.n_missing} missing", ""]
    lines += [_problem_line("failed", problem, report) for problem in report.failed]
    lines += [_problem_line("missing", problem, report) for problem in report.missing]
    if not report.failed and not report.missing:
        lines.append("Every expected run finished.")
    return [*lines, ""]


def _data_cell(report: Report) -> str:
    if not report.data:
        return "unknown (no job records it)"
    parts = []
    for entry in report.data:
        text = entry.name + (f" (`{entry.source}`)" if entry.source else "")
        if len(report.data) > 1:
            text += f": job(s) {', '.join(entry.jobs)}"
        parts.append(text)
    said = "run.json" if all(entry.recorded_in == "run.json" for entry in report.data) else "the configs"
    return "; ".join(parts) + f" (from {said})"


def _header(report: Report) -> list[tuple[str, str]]:
    meta = report.meta
    commit = _commit_text(report)
    if report.baseline is None:
        baseline = "none: per-arm means only, no deltas"
    else:
        baseline = f"`{report.short(report.baseline)}` (from {report.baseline_source})"
    return [
        ("sweep", f"`{meta.sweep_dir}`"),
        ("date", meta.generated_at),
        ("ebr version", meta.ebr_version),
        ("git commit (the jobs' code, from run.json)", commit),
        ("experiment", meta.experiment_name or "n/a"),
        ("data read", _data_cell(report)),
        ("control sweep", "yes (knob off: the gain should vanish)" if meta.control else "no"),
        (
            "runs",
            f"{report.n_runs} job directories, {report.n_finished} finished, {report.n_failed} "
            f"failed, {report.n_missing} missing (expected: {report.expected_runs} runs; "
            f"{len(report.arms)} arms × {max(len(report.seeds), 1)} seeds observed)",
        ),
        ("arms", f"{len(report.arms)}, varying {', '.join(report.arm_keys) or 'nothing'}"),
        ("arm labels (the jobs' override_dirname)", "; ".join(f"`{label}`" for label in report.arm_labels)),
        ("seeds", ", ".join(report.seeds) or "unknown"),
        ("baseline", baseline),
    ]


def _commit_text(report: Report) -> str:
    meta = report.meta
    if meta.code:
        return code_label(meta.code)
    commit = meta.git_commit or "unavailable"
    return commit + (" with uncommitted changes" if meta.git_dirty else "")


def _code_lines(report: Report) -> list[str]:
    """The code identities the finished jobs ran, with versions and (when mixed) their jobs."""
    code = report.meta.code
    if not code:
        return []
    lines = ["## Code", ""]
    if len(code) > 1:
        lines += [
            "**Mixed code** (reported with --allow-mixed-code): the numbers below pool jobs of "
            "different code.",
            "",
        ]
    for used in code:
        versions = ", ".join(f"{name} {version}" for name, version in used.packages.items())
        text = (
            f"- `{used.label}`: {len(used.jobs)} job(s); ebr {used.ebr_version}; {versions or 'no versions'}"
        )
        if len(code) > 1:
            text += f"; jobs {', '.join(used.jobs)}"
        lines.append(_cell(text))
    return [*lines, ""]


def _all_metrics_row(report: Report, metric: str, short: str, row: ResultRow) -> str:
    delta = row.delta
    values = [
        metric,
        f"**{short}**" if row.is_baseline else short,
        str(row.n),
        fmt_number(row.mean),
        fmt_number(row.std),
        "baseline" if row.is_baseline else fmt_pct(delta.rel_mean) if delta else "",
        fmt_delta_ci(delta.t_ci, delta.clipped) if delta else "",
        fmt_p(delta.p_value) if delta else "",
        str(delta.n_pairs) if delta else "",
    ]
    return "| " + " | ".join(_cell(v) for v in values) + " |"


def _first_line(report: Report) -> str:
    """The title; an incomplete sweep says so first, as its exit code does (ebr.report.cli)."""
    title = f"{report.title()} (data: {report.data_label()})"
    if not report.incomplete:
        return f"# ebr report: {title}"
    return (
        f"# ebr report: INCOMPLETE ({report.n_failed} failed, {report.n_missing} missing of "
        f"{report.expected_runs} expected runs): {title}"
    )


def render_markdown(report: Report) -> str:
    """``report.md``: header, method, failed/missing runs, one table per headline metric, all metrics.

    Args:
        report: the report.
    """
    lines = [_first_line(report), "", "| | |", "|---|---|"]
    lines += [f"| {key} | {_cell(str(value))} |" for key, value in _header(report)]
    method = report.method
    lines += ["", "## Method", "", f"- {method.estimator}", f"- {method.interval}"]
    if method.bootstrap:
        lines.append(f"- {method.bootstrap}")
    lines += [f"- {method.p_value}", "- Intervals and p-values need at least 2 seed pairs (else n/a)."]
    lines += method_lines(report)
    if any(
        row.delta is not None and row.delta.clipped
        for rows in report.results.values()
        for row in rows.values()
    ):
        lines.append(f"- {CLIP_NOTE}")
    lines.append("")
    lines += _code_lines(report)
    lines += _problem_lines(report)
    with_bootstrap = method.bootstrap is not None
    lines += claim_lines(report)
    lines += world_tables(report)
    lines += ["## Headline metrics", ""]
    for metric in report.headline_metrics:
        lines += [f"### {metric}", "", *_metric_table(report, metric, with_bootstrap), ""]
    if report.notes:
        lines += ["## Notes", "", *(f"- {_cell(note)}" for note in report.notes), ""]
    lines += ["## All metrics", ""]
    header_row = ["metric", "arm", "n", "mean", "std", "Δ vs baseline", "95% CI (t)", "p", "pairs"]
    lines += ["| " + " | ".join(header_row) + " |", "|" + "---|" * len(header_row)]
    for metric in report.metrics:
        for arm in report.arm_order():
            lines.append(_all_metrics_row(report, metric, arm.short, report.results[metric][arm.label]))
    return "\n".join(lines) + "\n"


def write_report(report: Report, sweep_dir: Path) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and ``deltas.png`` (``means.png`` without a baseline)
    into `sweep_dir`, each atomically.

    Args:
        report: the report.
        sweep_dir: the sweep directory.

    Returns:
        File kind ("json", "md", "png") -> path written.
    """
    figure, stale = (DELTAS_PNG, MEANS_PNG) if report.baseline is not None else (MEANS_PNG, DELTAS_PNG)
    paths = {"json": sweep_dir / REPORT_JSON, "md": sweep_dir / REPORT_MD, "png": sweep_dir / figure}
    # a figure of an earlier report of the same sweep with(out) a baseline would contradict this one
    (sweep_dir / stale).unlink(missing_ok=True)
    write_text_atomic(paths["json"], report.dumps())
    write_text_atomic(paths["md"], render_markdown(report))
    write_bytes_atomic(paths["png"], deltas_png(report))
    return paths
