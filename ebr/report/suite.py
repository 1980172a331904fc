"""``experiments/README.md`` from the ``report.json`` of several sweeps (each ablation and its control).

Usage::

    python -m ebr.report.suite --out experiments/README.md SWEEP_DIR [SWEEP_DIR ...]

An ablation and its control are paired through ``report.technique`` (the control sweep has
``report.control: true``); each technique gets one row with the paper's reported delta, ebr's measured
delta on the paper's metric for each claim the experiment declares (``report.claims``), pooled over
worlds when the sweep ran several, the number of worlds agreeing, the control's delta, the verdict word
of `ebr.report.verdict`, the commit and a link to the technique's page: one row per (technique, claim).
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
from ebr.report.pooled import ClaimResult
from ebr.report.render_worlds import agree_text, claim_name, pooled_text
from ebr.report.verdict import RULE, claim_verdict, control_verdict
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


def _claim_rows(row: TechniqueRow) -> list[tuple[ClaimResult | None, ClaimResult | None]]:
    """(ablation result, control result) per claim of the technique, matched by the claim itself."""
    ablation = list(row.ablation.claims) if row.ablation is not None else []
    control = list(row.control.claims) if row.control is not None else []
    pairs: list[tuple[ClaimResult | None, ClaimResult | None]] = []
    for result in ablation:
        match = next((c for c in control if c.claim == result.claim), None)
        pairs.append((result, match))
    pairs += [(None, c) for c in control if all(c.claim != a.claim for a in ablation)]
    return pairs


def _worlds_cell(result: ClaimResult | None) -> str:
    if result is None or result.delta is None:
        return "n/a"
    pooled = result.delta.pooled
    return "1 world" if pooled is None else agree_text(pooled)


def _measured_cell(result: ClaimResult | None, report: Report | None) -> str:
    if report is None:
        return "no sweep"
    if result is None:
        return "claim not in this sweep"
    return result.problem or pooled_text(result.delta)


def claim_row(row: TechniqueRow, pair: tuple[ClaimResult | None, ClaimResult | None], out_dir: Path) -> str:
    """One table line: a technique's paper claim, what ebr measured, the control, the verdict.

    Args:
        row: the technique's reports.
        pair: (the ablation's result, the control's result) for the claim.
        out_dir: the README's folder (page links are relative to it).
    """
    ablation, control = pair
    claim = (ablation or control).claim  # type: ignore[union-attr]
    verdict = f"{claim_verdict(ablation)}; {control_verdict(control)}"
    reports = [r for r in (row.ablation, row.control) if r is not None]
    cells = [
        row.technique,
        claim_name(ablation or control),  # type: ignore[arg-type]
        f"{claim.metric}: {claim.paper}",
        _measured_cell(ablation, row.ablation),
        _worlds_cell(ablation),
        _measured_cell(control, row.control),
        verdict,
        _commit_cell(reports),
        _page_cell(row, out_dir),
    ]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _no_claim_row(row: TechniqueRow, out_dir: Path) -> str:
    reports = [r for r in (row.ablation, row.control) if r is not None]
    cells = [row.technique, "no claim declared (report.claims)", "—", "—", "—", "—", "—"]
    cells += [_commit_cell(reports), _page_cell(row, out_dir)]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


HEADER = [
    "# Reproduced ablations",
    "",
    "Generated by `bash scripts/reproduce.sh` (`python -m ebr.report.suite`): one row per technique and "
    "paper claim; every number comes from the `report.json` of the sweeps listed below, produced by "
    "`ebr-report` on this repository's code. The per-arm detail is on each technique's page and in each "
    "sweep's `report.md`.",
    "",
    "- **paper**: the paper's metric as ebr measures it, and the delta the paper reports (online A/B "
    "unless stated).",
    "- **ebr Δ [95% CI]**: the claim's arm against its baseline on that metric, relative delta paired "
    "within (world, training seed). Over several worlds: the mean of the world means with a hierarchical "
    "bootstrap interval (worlds, then seeds within a world; docs/statistics.md); over one world: the "
    "mean over seeds with the paired t interval.",
    "- **worlds**: in how many worlds the delta has the pooled sign with an interval excluding 0; in "
    "brackets, in how many it has that sign at all (the verdict asks it of every world).",
    "- **control Δ**: the same comparison with the world's knob for the phenomenon off; the gain should "
    "vanish (interval covering 0) or reverse.",
    f"- **verdict**: from the rule in `ebr/report/verdict.py`, not from prose. {RULE}",
    "- **commit**: the commit of the code that ran the sweeps' jobs (their `run.json`), "
    '"with uncommitted changes" when that code differed from it.',
    "",
    "| technique | claim | paper: metric, reported | ebr Δ [95% CI] | worlds | control Δ [95% CI] | verdict "
    "| commit | page |",
    "|---|---|---|---|---|---|---|---|---|",
]


def render_readme(rows: list[TechniqueRow], out: Path) -> str:
    """The text of ``experiments/README.md``.

    Args:
        rows: one per technique, from `pair_reports`.
        out: where the README goes (links to pages are relative to it).
    """
    lines = list(HEADER)
    for row in rows:
        pairs = _claim_rows(row)
        if not pairs:
            lines.append(_no_claim_row(row, out.parent))
        lines += [claim_row(row, pair, out.parent) for pair in pairs]
    lines += ["", "## Sweeps", ""]
    root = repository_root(out)
    for row in rows:
        for kind, report in (("ablation", row.ablation), ("control", row.control)):
            if report is not None:
                shown = display_path(report.meta.sweep_dir, root)
                worlds = f"worlds {', '.join(report.worlds)}" if report.worlds else "one world"
                lines.append(
                    f"- {row.technique}, {kind}: `{shown}` (data: {report.data_label()}; {worlds}; "
                    f"{len(report.seeds)} replicates, {report.n_failed} failed, {report.n_missing} missing "
                    f"runs; report of {report.meta.generated_at})"
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
