"""Failed, unfinished and expected-but-absent jobs of a sweep (`ebr.report.sweep.load_sweep`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ebr.report.document import Problem
from ebr.report.grid import MULTIRUN_FILE, ExpectedGrid
from ebr.report.meta import SweepError
from ebr.report.worlds import SEED_KEY, WORLD_KEY, replicate_key
from ebr.runs import ERROR_FILE, METRICS_FILE, arm_from_overrides, parse_override

if TYPE_CHECKING:
    from ebr.report.sweep import Job


def _parse(text: str) -> tuple[str, str]:
    try:
        return parse_override(text)
    except ValueError as exc:
        raise SweepError(f"{MULTIRUN_FILE}: {exc}") from exc


def error_summary(error: str) -> str:
    """The last non-empty line of a traceback (the exception and its message)."""
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    return lines[-1] if lines else "error.txt is empty"


def job_problems(jobs: list[Job], notes: list[str]) -> tuple[list[Problem], list[Problem]]:
    """(failed jobs, unfinished jobs) among the job folders.

    Args:
        jobs: the job folders read.
        notes: receives the jobs with both metrics.json and error.txt.
    """
    failed: list[Problem] = []
    missing: list[Problem] = []
    for job in jobs:
        arm = job.arm.label
        if job.status == "failed":
            failed.append(Problem(job.name, arm, job.seed, error_summary(job.error or "")))
        elif job.status == "missing":
            missing.append(Problem(job.name, arm, job.seed, f"neither {METRICS_FILE} nor {ERROR_FILE}"))
        elif job.error is not None:
            notes.append(f"Job {job.name} has both {METRICS_FILE} and {ERROR_FILE}; its metrics are used.")
    return failed, missing


def grid_missing(
    grid: ExpectedGrid, jobs: list[Job], notes: list[str], worlds: bool = False
) -> list[Problem]:
    """The expected jobs of `grid` that no job folder holds, each named by its overrides.

    Args:
        grid: the sweep's recorded grid (its `jobs` set).
        jobs: the job folders read.
        notes: receives the folders the grid does not expect (another sweep's jobs in the folder).
        worlds: the sweep runs over several worlds: a missing job's seed is its ``WORLD/SEED``.
    """
    by_overrides = {frozenset(job.override_list): job for job in jobs}
    expected = [frozenset(overrides) for overrides in grid.jobs or []]
    missing = []
    for number, overrides in enumerate(grid.jobs or []):
        if frozenset(overrides) in by_overrides:
            continue
        arm = arm_from_overrides(overrides, [SEED_KEY, WORLD_KEY, *grid.exclude_keys]).label
        values = dict(_parse(text) for text in overrides)
        seed = values.get(SEED_KEY, grid.default_seed)
        if worlds:
            seed = replicate_key(values.get(WORLD_KEY), seed)
        reason = f"no job directory (expected by {MULTIRUN_FILE})"
        missing.append(Problem(f"job {number}: {' '.join(overrides)}", arm, seed, reason))
    unexpected = [job.name for job in jobs if frozenset(job.override_list) not in set(expected)]
    if unexpected:
        notes.append(
            f"Job(s) {', '.join(unexpected)} are not in the grid this sweep recorded ({MULTIRUN_FILE}): "
            "another sweep's jobs in the same folder?"
        )
    return missing


def observed_grid_note(grid: ExpectedGrid | None, n_jobs: int) -> str:
    """What the report says about the expected grid when the sweep recorded no fixed one.

    Args:
        grid: the sweep's recorded grid, None without ``multirun.yaml``.
        n_jobs: job folders read.
    """
    if grid is not None and grid.n_trials is not None:
        return (
            f"A search ({grid.sweeper.rsplit('.', 1)[-1]}): {n_jobs} trial(s) recorded of "
            f"{grid.n_trials} requested; no fixed grid, so missing runs are counted against the "
            "observed arms × seeds."
        )
    if grid is not None:
        return (
            f"A {grid.sweeper.rsplit('.', 1)[-1]} sweep has no fixed grid: missing runs are counted "
            "against the observed arms × seeds."
        )
    return (
        f"No {MULTIRUN_FILE} records this sweep's parameters: the expected grid is the observed arms × "
        "seeds, so a job whose folder is gone entirely goes unnoticed."
    )
