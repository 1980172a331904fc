"""``report.json``, ``report.md`` and ``deltas.png`` of a sweep, each written to a temporary name and renamed.

The Markdown and the plot are rendered from the JSON document, so the three files always carry the
same numbers.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ebr
from ebr.report import stats
from ebr.report.plots import deltas_png
from ebr.report.runs import SEED_KEY, Sweep
from ebr.report.stats import ArmSummary, PairedDelta

SCHEMA = "ebr-report/1"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
DELTAS_PNG = "deltas.png"


def git_commit(directory: Path) -> tuple[str | None, bool | None]:
    """(HEAD commit, whether the work tree has uncommitted changes) of the repository holding `directory`.

    (None, None) when git or a commit is unavailable.

    Args:
        directory: any directory inside the repository.
    """
    try:
        head = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "--verify", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if head.returncode != 0:
            return None, None
        status = subprocess.run(
            ["git", "-C", str(directory), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None, None
    dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    return head.stdout.strip(), dirty


def _seed_key(seed: str | None) -> str:
    return "unknown" if seed is None else seed


def _interval(ci: tuple[float, float] | None) -> list[float] | None:
    return None if ci is None else [ci[0], ci[1]]


def _delta_json(delta: PairedDelta | None) -> dict[str, Any] | None:
    if delta is None:
        return None
    return {
        "n_pairs": delta.n_pairs,
        "rel_mean": delta.mean,
        "t_ci": _interval(delta.t_ci),
        "bootstrap_ci": _interval(delta.bootstrap_ci),
        "p_value": delta.p_value,
        "per_seed": {_seed_key(s): d for s, d in delta.per_seed.items()},
        "excluded": {_seed_key(s): why for s, why in delta.excluded.items()},
    }


def _arm_json(row: ArmSummary) -> dict[str, Any]:
    return {
        "n": row.n,
        "mean": row.mean,
        "std": row.std,
        "values": {_seed_key(s): v for s, v in row.values.items()},
        "missing_in": row.missing_in,
        "is_baseline": row.is_baseline,
        "paper": row.paper,
        "delta": _delta_json(row.delta),
    }


def _summary_notes(summaries: dict[str, dict[str, ArmSummary]], baseline: str | None) -> list[str]:
    notes = []
    for metric, rows in summaries.items():
        if all(row.n == 0 for row in rows.values()):
            notes.append(f"No finished run reports {metric}.")
            continue
        for arm, row in rows.items():
            if row.missing_in:
                notes.append(f"{metric} is missing in job(s) {', '.join(row.missing_in)} ({arm}).")
            if row.delta is None:
                continue
            for seed, why in row.delta.excluded.items():
                notes.append(
                    f"{metric}, {arm}: seed {_seed_key(seed)} excluded from the paired delta: {why}."
                )
            if row.delta.n_pairs < 2 and baseline is not None:
                notes.append(f"{metric}, {arm}: {row.delta.n_pairs} seed pair(s); intervals and p-value n/a.")
    return notes


def build_report(
    sweep: Sweep,
    summaries: dict[str, dict[str, ArmSummary]],
    *,
    baseline: str | None,
    baseline_source: str | None,
    headline: list[str],
    n_boot: int,
    seed: int,
    notes: list[str],
) -> dict[str, Any]:
    """The ``report.json`` document.

    Args:
        sweep: the loaded sweep.
        summaries: `stats.summarize_sweep` output for every metric.
        baseline: baseline arm label or None.
        baseline_source: where the baseline came from ("experiment config", "--baseline") or None.
        headline: headline metrics, in order.
        n_boot: bootstrap resamples used.
        seed: bootstrap seed used.
        notes: extra notes to state (e.g. why there is no baseline).
    """
    now = datetime.now(UTC)
    commit, dirty = git_commit(Path(ebr.__file__).resolve().parent)
    meta = sweep.meta
    n_seeds = max(len(sweep.seeds), 1)
    return {
        "schema": SCHEMA,
        "sweep_dir": str(sweep.path.resolve()),
        "generated_at": now.isoformat(timespec="seconds"),
        "date": now.date().isoformat(),
        "ebr_version": ebr.__version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "experiment_name": meta.experiment_name,
        "technique": meta.technique,
        "control": meta.control,
        "page": meta.page,
        "paper": meta.paper,
        "wandb_group": meta.wandb_group,
        "arm_keys": sweep.arm_keys,
        "seed_key": SEED_KEY,
        "arms": sweep.arms,
        "seeds": sweep.seeds,
        "baseline": baseline,
        "baseline_source": baseline_source,
        "n_runs": len(sweep.jobs),
        "expected_runs": len(sweep.arms) * n_seeds,
        "n_finished": sum(job.status == "finished" for job in sweep.jobs),
        "n_failed": len(sweep.failed),
        "n_missing": len(sweep.missing),
        "failed": [problem.to_json() for problem in sweep.failed],
        "missing": [problem.to_json() for problem in sweep.missing],
        "headline_metrics": headline,
        "metrics": list(summaries),
        "method": {
            "estimator": stats.ESTIMATOR,
            "interval": stats.T_METHOD,
            "bootstrap": stats.BOOTSTRAP_METHOD.format(n_boot=n_boot, seed=seed) if n_boot > 0 else None,
            "p_value": stats.P_METHOD,
            "level": stats.LEVEL,
            "primary_interval": "t",
            "n_bootstrap": n_boot,
            "bootstrap_seed": seed,
        },
        "notes": [*sweep.notes, *notes, *_summary_notes(summaries, baseline)],
        "results": {
            metric: {arm: _arm_json(row) for arm, row in rows.items()} for metric, rows in summaries.items()
        },
    }


def fmt_number(value: float | None) -> str:
    """A metric value for a table: 5 significant digits, plain digits for large counts, "n/a" for None."""
    if value is None:
        return "n/a"
    if abs(value) >= 1e5:
        return f"{value:.0f}"
    return f"{value:.5g}"


def fmt_pct(value: float | None) -> str:
    """A relative delta (fraction) as a signed percentage with 2 decimals, "n/a" for None."""
    return "n/a" if value is None else f"{100 * value:+.2f}%"


def fmt_ci(ci: list[float] | None) -> str:
    """An interval of fractions as "[lo%, hi%]", "n/a" for None."""
    return "n/a" if ci is None else f"[{fmt_pct(ci[0])}, {fmt_pct(ci[1])}]"


def fmt_p(value: float | None) -> str:
    """A p-value with 2 significant digits, "n/a" for None."""
    return "n/a" if value is None else f"{value:.2g}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _arm_order(report: dict[str, Any]) -> list[str]:
    """Baseline first, then the other arms in sweep order."""
    base = report["baseline"]
    return ([base] if base is not None else []) + [arm for arm in report["arms"] if arm != base]


def _metric_table(report: dict[str, Any], metric: str, with_bootstrap: bool) -> list[str]:
    header = ["arm", "n", "mean ± std", "Δ vs baseline", "95% CI (t)"]
    header += ["95% CI (bootstrap)"] if with_bootstrap else []
    header += ["p", "pairs", "paper (reported)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for arm in _arm_order(report):
        row = report["results"][metric][arm]
        spread = fmt_number(row["mean"]) + ("" if row["std"] is None else f" ± {fmt_number(row['std'])}")
        delta = row["delta"]
        if row["is_baseline"] or delta is None:
            cells = ["baseline" if row["is_baseline"] else "", ""] + [""] * with_bootstrap + ["", ""]
        else:
            cells = [fmt_pct(delta["rel_mean"]), fmt_ci(delta["t_ci"])]
            cells += [fmt_ci(delta["bootstrap_ci"])] if with_bootstrap else []
            cells += [fmt_p(delta["p_value"]), str(delta["n_pairs"])]
        name = f"**{arm}**" if row["is_baseline"] else arm
        paper = row["paper"] or ""
        values = [name, str(row["n"]), spread, *cells, paper]
        lines.append("| " + " | ".join(_cell(v) for v in values) + " |")
    return lines


def _problem_lines(report: dict[str, Any]) -> list[str]:
    lines = [
        f"## Failed and missing runs: {report['n_failed']} failed, {report['n_missing']} missing",
        "",
    ]
    for kind in ("failed", "missing"):
        for problem in report[kind]:
            seed = "" if problem["seed"] is None else f", seed={problem['seed']}"
            lines.append(f"- {kind}: `{problem['name']}` ({problem['arm']}{seed}): {problem['reason']}")
    if not report["failed"] and not report["missing"]:
        lines.append("Every expected run finished.")
    return [*lines, ""]


def render_markdown(report: dict[str, Any]) -> str:
    """``report.md``: header, method, failed/missing runs, one table per headline metric, all metrics.

    Args:
        report: the document from `build_report`.
    """
    title = report["technique"] or report["experiment_name"] or Path(report["sweep_dir"]).name
    commit = report["git_commit"] or "unavailable"
    if report["git_dirty"]:
        commit += " (with uncommitted changes)"
    if report["baseline"] is None:
        baseline = "none: per-arm means only, no deltas"
    else:
        baseline = f"`{report['baseline']}` (from {report['baseline_source']})"
    seeds = ", ".join(report["seeds"]) or "unknown"
    header = [
        ("sweep", f"`{report['sweep_dir']}`"),
        ("date", report["generated_at"]),
        ("ebr version", report["ebr_version"]),
        ("git commit", commit),
        ("experiment", report["experiment_name"] or "n/a"),
        ("control sweep", "yes (knob off: the gain should vanish)" if report["control"] else "no"),
        (
            "runs",
            f"{report['n_runs']} job directories, {report['n_finished']} finished, {report['n_failed']} "
            f"failed, {report['n_missing']} missing (expected grid: {len(report['arms'])} arms × "
            f"{max(len(report['seeds']), 1)} seeds = {report['expected_runs']})",
        ),
        ("arms", f"{len(report['arms'])}, varying {', '.join(report['arm_keys']) or 'nothing'}"),
        ("seeds", seeds),
        ("baseline", baseline),
    ]
    lines = [f"# ebr report: {title}", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {_cell(str(value))} |" for key, value in header]
    method = report["method"]
    lines += ["", "## Method", "", f"- {method['estimator']}", f"- {method['interval']}"]
    if method["bootstrap"]:
        lines.append(f"- {method['bootstrap']}")
    lines += [f"- {method['p_value']}", "- Intervals and p-values need at least 2 seed pairs (else n/a).", ""]
    lines += _problem_lines(report)
    with_bootstrap = method["bootstrap"] is not None
    lines += ["## Headline metrics", ""]
    for metric in report["headline_metrics"]:
        lines += [f"### {metric}", "", *_metric_table(report, metric, with_bootstrap), ""]
    if report["notes"]:
        lines += ["## Notes", "", *(f"- {_cell(note)}" for note in report["notes"]), ""]
    lines += ["## All metrics", ""]
    header_row = ["metric", "arm", "n", "mean", "std", "Δ vs baseline", "95% CI (t)", "p", "pairs"]
    lines += ["| " + " | ".join(header_row) + " |", "|" + "---|" * len(header_row)]
    for metric in report["metrics"]:
        for arm in _arm_order(report):
            row = report["results"][metric][arm]
            delta = row["delta"] or {}
            values = [
                metric,
                f"**{arm}**" if row["is_baseline"] else arm,
                str(row["n"]),
                fmt_number(row["mean"]),
                fmt_number(row["std"]),
                "baseline" if row["is_baseline"] else fmt_pct(delta.get("rel_mean")) if delta else "",
                fmt_ci(delta.get("t_ci")) if delta else "",
                fmt_p(delta.get("p_value")) if delta else "",
                str(delta["n_pairs"]) if delta else "",
            ]
            lines.append("| " + " | ".join(_cell(v) for v in values) + " |")
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file next to `path` and rename it over `path`.

    Args:
        path: destination.
        data: file content.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def plot_deltas(report: dict[str, Any], path: Path) -> None:
    """Write ``deltas.png`` (see `ebr.report.plots.deltas_png`) atomically to `path`."""
    write_atomic(path, deltas_png(report))


def write_report(report: dict[str, Any], sweep_dir: Path) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and ``deltas.png`` into `sweep_dir`, each atomically.

    Args:
        report: the document from `build_report`.
        sweep_dir: the sweep directory.

    Returns:
        File kind ("json", "md", "png") -> path written.
    """
    paths = {"json": sweep_dir / REPORT_JSON, "md": sweep_dir / REPORT_MD, "png": sweep_dir / DELTAS_PNG}
    # allow_nan=False: a NaN reaching here is a bug, never something to write as a number
    text = json.dumps(report, indent=2, allow_nan=False, ensure_ascii=False) + "\n"
    write_atomic(paths["json"], text.encode("utf-8"))
    write_atomic(paths["md"], render_markdown(report).encode("utf-8"))
    plot_deltas(report, paths["png"])
    return paths
