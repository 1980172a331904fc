"""``experiments/README.md`` from the ``report.json`` of several sweeps (each ablation and its control).

Usage::

    python -m ebr.report.suite --out experiments/README.md SWEEP_DIR [SWEEP_DIR ...]

An ablation and its control are paired through ``report.technique`` (the control sweep has
``report.control: true``); each technique gets one row with the paper's reported delta, ebr's measured
delta with its 95% interval for the headline metrics, the control's delta, the seeds, date, commit and
a link to the technique's page.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ebr.report.code import code_label
from ebr.report.document import Report, ReportFormatError
from ebr.report.json_reader import load_report
from ebr.report.render import fmt_ci, fmt_pct
from ebr.runs import write_text_atomic

CONTROL_SUFFIX = "_control"
# the folder sweeps are written under (conf/train.yaml's hydra.sweep.dir)
MULTIRUN_DIR = "multirun"

__all__ = [
    "SuiteError",
    "TechniqueRow",
    "load_report",
    "main",
    "pair_reports",
    "render_readme",
    "write_readme",
]


class SuiteError(ValueError):
    """Bad input to the suite: two reports for one slot (a bad report.json is a `ReportFormatError`)."""


@dataclass
class TechniqueRow:
    """One technique: its ablation report and its control report (either may be absent).

    Args:
        technique: the technique's name.
        ablation: the ablation sweep's report, or None.
        control: the control sweep's report, or None.
    """

    technique: str
    ablation: Report | None = None
    control: Report | None = None


def technique_of(report: Report) -> str:
    """The pairing key: ``report.technique``, else the experiment name without ``_control``, else the dir.

    Args:
        report: a sweep's report.
    """
    meta = report.meta
    if meta.technique:
        return meta.technique
    name = meta.experiment_name or Path(meta.sweep_dir).name
    return name.removesuffix(CONTROL_SUFFIX) if meta.control else name


def pair_reports(reports: list[Report]) -> list[TechniqueRow]:
    """Group reports into one row per technique, in order of first appearance.

    Args:
        reports: the sweeps' reports.

    Raises:
        SuiteError: two ablation (or two control) reports for the same technique.
    """
    rows: dict[str, TechniqueRow] = {}
    for report in reports:
        name = technique_of(report)
        row = rows.setdefault(name, TechniqueRow(name))
        slot = "control" if report.meta.control else "ablation"
        previous = getattr(row, slot)
        if previous is not None:
            raise SuiteError(
                f"two {slot} reports for technique {name!r}: {previous.meta.sweep_dir} "
                f"and {report.meta.sweep_dir}"
            )
        setattr(row, slot, report)
    return list(rows.values())


def _short_arm(report: Report, label: str) -> str:
    # with one differing key the value alone names the arm ("masknet")
    short = report.short(label)
    return short.split("=", 1)[1] if len(report.arm_keys) == 1 and "=" in short else short


def measured_cell(report: Report | None, metrics: list[str]) -> str:
    """Every non-baseline arm's delta and t interval for `metrics`, one line per arm and metric.

    Args:
        report: a sweep's report, or None when that sweep is absent.
        metrics: metrics to show (missing ones say so).
    """
    if report is None:
        return "no sweep"
    if report.baseline is None:
        return "no baseline arm: means only (see report)"
    lines = []
    for arm in report.arm_labels:
        if arm == report.baseline:
            continue
        for metric in metrics:
            row = report.results.get(metric, {}).get(arm)
            delta = None if row is None else row.delta
            if delta is None or delta.rel_mean is None:
                lines.append(f"**{_short_arm(report, arm)}** {metric}: n/a")
                continue
            interval = fmt_ci(delta.t_ci) if delta.t_ci is not None else "(CI n/a)"
            lines.append(
                f"**{_short_arm(report, arm)}** {metric}: {fmt_pct(delta.rel_mean)} {interval} "
                f"(n={delta.n_pairs})"
            )
    return "<br>".join(lines) or "no arm besides the baseline"


def _paper_cell(report: Report | None) -> str:
    if report is None or not report.meta.paper:
        return "—"
    return "<br>".join(f"**{arm}**: {text}" for arm, text in report.meta.paper.items())


def _runs_cell(report: Report | None, label: str) -> str:
    if report is None:
        return f"{label}: no sweep"
    text = f"{label}: {len(report.seeds)} ({', '.join(report.seeds)})"
    if report.n_failed or report.n_missing:
        text += f", **{report.n_failed} failed, {report.n_missing} missing runs**"
    return text


def _commit_cell(reports: list[Report]) -> str:
    """The commit of each sweep's jobs ("... with uncommitted changes" when their diff hash is set)."""
    commits = []
    for report in reports:
        meta = report.meta
        if meta.code:
            commit = code_label(meta.code)
        else:  # a report.json written before jobs recorded their code
            commit = (meta.git_commit or "unavailable")[:12]
            commit += " with uncommitted changes" if meta.git_dirty else ""
        if commit not in commits:
            commits.append(commit)
    return "<br>".join(commits)


def _page_cell(row: TechniqueRow, out_dir: Path) -> str:
    primary = row.ablation or row.control
    page = None if primary is None else primary.meta.page
    if not page:
        return "—"
    # pages are named relative to the repository root, the directory the suite runs from
    link = os.path.relpath(Path(page).resolve(), out_dir.resolve())
    return f"[{Path(page).stem}]({Path(link).as_posix()})"


def verdict_of(technique: str, page: str | Path | None) -> str:
    """The verdict the technique's page states: the paragraph that starts ``**Verdict, TECHNIQUE:**``.

    Written by a person after reading the sweeps, so it lives on the page next to its evidence; the
    suite only repeats it, and says so when the page has none.

    Args:
        technique: the row's technique name (``report.technique``).
        page: the page's path relative to the repository root (the directory the suite runs from).
    """
    if not page:
        return "no page"
    path = Path(page)
    if not path.is_file():
        return f"page {page} not found"
    marker = f"**Verdict, {technique}:**"
    paragraph: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if paragraph:
            if not line.strip():
                break
            paragraph.append(line.strip())
        elif line.startswith(marker):
            paragraph.append(line[len(marker) :].strip())
    return " ".join(paragraph) if paragraph else f"not stated on {page} (no line starting {marker})"


def display_path(path: str, root: Path) -> str:
    """`path` relative to the repository root, so the README holds no path of this machine.

    A sweep outside the repository is named from its ``multirun/`` folder on (where sweeps are
    written), else by its own name.

    Args:
        path: the sweep directory as its report.json records it (absolute).
        root: the repository root.
    """
    absolute = Path(path).resolve()
    try:
        return absolute.relative_to(root.resolve()).as_posix()
    except ValueError:
        parts = absolute.parts
        if MULTIRUN_DIR in parts:
            last = len(parts) - 1 - parts[::-1].index(MULTIRUN_DIR)
            return Path(*parts[last:]).as_posix()
        return absolute.name


def repository_root(out: Path) -> Path:
    """The repository holding `out` (the README): the top of its git work tree, else the directory
    the suite runs from (pages are named relative to it too).

    Args:
        out: the README to write.
    """
    top = _git_top(out.resolve().parent)
    return top if top is not None else Path.cwd()


def _git_top(directory: Path) -> Path | None:
    while not directory.is_dir():
        directory = directory.parent
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return Path(done.stdout.strip()) if done.returncode == 0 and done.stdout.strip() else None


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_readme(rows: list[TechniqueRow], out: Path) -> str:
    """The text of ``experiments/README.md``.

    Args:
        rows: one per technique, from `pair_reports`.
        out: where the README goes (links to pages are relative to it).
    """
    lines = [
        "# Reproduced ablations",
        "",
        "Generated by `bash scripts/reproduce.sh` (`python -m ebr.report.suite`); every number comes from "
        "the `report.json` of the sweep named below, produced by `ebr-report` on this repository's code.",
        "",
        "- **paper**: the delta the paper reports (online A/B unless stated).",
        "- **ebr**: the measured relative delta on the synthetic world: mean over seeds of "
        "(arm − baseline) / baseline paired by seed, with the 95% paired t interval and n = seed pairs. "
        "An interval excluding 0 is a measured effect.",
        "- **control**: the same sweep with the world's knob for this phenomenon off; the gain should vanish "
        "(interval covering 0).",
        "- **verdict**: what the evidence supports, as the technique's page states it.",
        "- **commit**: the commit of the code that ran the sweeps' jobs (their `run.json`), "
        '"with uncommitted changes" when that code differed from it.',
        "",
        "| technique | paper (reported) | ebr: measured Δ [95% CI] | control Δ (knob off) | verdict | seeds "
        "| date | commit | page |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        reports = [r for r in (row.ablation, row.control) if r is not None]
        primary = row.ablation or row.control
        metrics = [] if primary is None else list(primary.headline_metrics)
        dates = sorted({r.meta.date for r in reports})
        cells = [
            row.technique,
            _paper_cell(row.ablation or row.control),
            measured_cell(row.ablation, metrics),
            measured_cell(row.control, metrics),
            verdict_of(row.technique, None if primary is None else primary.meta.page),
            "<br>".join([_runs_cell(row.ablation, "ablation"), _runs_cell(row.control, "control")]),
            "<br>".join(dates),
            _commit_cell(reports),
            _page_cell(row, out.parent),
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines += ["", "## Sweeps", ""]
    root = repository_root(out)
    for row in rows:
        for kind, report in (("ablation", row.ablation), ("control", row.control)):
            if report is not None:
                shown = display_path(report.meta.sweep_dir, root)
                lines.append(
                    f"- {row.technique}, {kind}: `{shown}` (data: {report.data_label()}; "
                    f"report of {report.meta.generated_at})"
                )
    return "\n".join(lines) + "\n"


def write_readme(out: str | Path, sweep_dirs: list[str | Path]) -> Path:
    """Read the sweeps' reports and write the README atomically.

    Args:
        out: destination, e.g. ``experiments/README.md``.
        sweep_dirs: sweep directories (or their report.json files).

    Raises:
        ReportFormatError: a missing or malformed report.json (the message names the file).
        SuiteError: two reports for one slot.
    """
    out = Path(out)
    rows = pair_reports([load_report(path) for path in sweep_dirs])
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, render_readme(rows, out))
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m ebr.report.suite --out README SWEEP_DIR...``; exit 0 on success, 2 on bad input.

    Args:
        argv: arguments without the program name; defaults to ``sys.argv[1:]``.
    """
    parser = argparse.ArgumentParser(
        prog="python -m ebr.report.suite",
        description="Write experiments/README.md from the report.json of ablation and control sweeps.",
    )
    parser.add_argument("--out", type=Path, required=True, help="the README to write")
    parser.add_argument("sweep_dirs", nargs="+", type=Path, help="sweep directories holding report.json")
    args = parser.parse_args(argv)
    try:
        out = write_readme(args.out, args.sweep_dirs)
    except (SuiteError, ReportFormatError) as exc:
        print(f"ebr.report.suite: error: {exc}", file=sys.stderr)
        return 2
    print(f"ebr.report.suite: wrote {out} ({len(args.sweep_dirs)} sweeps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
