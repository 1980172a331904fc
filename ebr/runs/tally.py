"""The tally of one sweep invocation: what each of its jobs did."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ebr.runs.files import FAILED, FINISHED, OUTCOME_FILE, OVERRIDES_FILE, REFUSED, SKIPPED


@dataclass(frozen=True)
class Tally:
    """What the jobs of one sweep invocation did.

    Args:
        counts: outcome -> number of jobs ("finished", "skipped", "failed", "refused", "no outcome").
        problems: "job: message" lines for the jobs that did not finish or skip.
    """

    counts: dict[str, int]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return all(self.counts.get(status, 0) == 0 for status in (FAILED, REFUSED, "no outcome"))

    def summary(self) -> str:
        order = (FINISHED, SKIPPED, FAILED, REFUSED, "no outcome")
        shown = [status for status in order if status in self.counts]
        counts = ", ".join(f"{self.counts[status]} {status}" for status in shown)
        return "sweep: " + (counts or "no jobs")


def tally_sweep(sweep_dir: str | os.PathLike[str], since: float) -> Tally:
    """Count the outcomes of the jobs of a sweep directory that ran since `since` (a time.time()).

    A job counts when Hydra wrote its ``.hydra/overrides.yaml`` at or after `since`; a job that
    counts but left no outcome (killed, or failed before the wrapper ran) is "no outcome".
    """
    counts: dict[str, int] = {}
    problems: list[str] = []
    directory = Path(sweep_dir)
    children = sorted(directory.iterdir()) if directory.is_dir() else []
    for child in children:
        overrides = child / OVERRIDES_FILE
        if not overrides.is_file() or overrides.stat().st_mtime < since - 1:
            continue
        outcome_path = child / OUTCOME_FILE
        status, message = "no outcome", "the job left no outcome (killed, or failed before it started)"
        if outcome_path.is_file():
            try:
                outcome = json.loads(outcome_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                outcome = {}
            if float(outcome.get("ended", 0)) >= since - 1:
                status, message = str(outcome.get("status")), str(outcome.get("message", ""))
        counts[status] = counts.get(status, 0) + 1
        if status not in (FINISHED, SKIPPED):
            problems.append(f"{child.name}: {status}: {message}")
    return Tally(counts, problems)
