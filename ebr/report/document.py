"""The report of a sweep as a typed object: what ``report.json`` holds and every writer reads.

`Report.to_json` gives the ``report.json`` document (schema `SCHEMA`);
`ebr.report.json_reader.read_report` reads one back, naming the file and the key of anything
malformed, so the Markdown, the plot, the wandb summary and the suite all read the same checked
object.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ebr.report.code import CodeUsed
from ebr.report.pooled import ClaimResult, Delta, delta_json
from ebr.report.worlds import WORLD_KEY

# ebr-report/2: arms are the jobs' override_dirname labels (with short labels and values beside
# them), the data set read and the wandb project are recorded.
SCHEMA = "ebr-report/2"
SCHEMA_PREFIX = "ebr-report/"
REPORT_JSON = "report.json"
# a seed of None (a job stating no seed) appears under this key in per-seed mappings
UNKNOWN_SEED = "unknown"


class ReportFormatError(ValueError):
    """A ``report.json`` that is not a report of this schema (the message names the file and key)."""


@dataclass(frozen=True)
class Provenance:
    """Where a report comes from and what the experiment says about itself.

    Args:
        sweep_dir: absolute path of the sweep directory.
        generated_at: ISO time the report was built (UTC, seconds).
        date: the date part of `generated_at`.
        ebr_version: version of the ebr distribution that built the report.
        git_commit: the commit the sweep's finished jobs ran (their ``run.json`` code identity),
            None when unknown or mixed (then `code` lists each).
        git_dirty: whether that code had uncommitted changes (a diff hash), None when unknown.
        experiment_name: the runs' ``experiment_name``.
        technique: ``report.technique`` of the experiment.
        control: ``report.control``: the knob-off control sweep.
        page: ``report.page``: repository-relative path of the technique's page.
        paper: ``report.paper``: arm value (or label) -> the paper's reported delta.
        wandb_group: the runs' ``logger.group``, else the experiment name.
        wandb_project: the runs' ``logger.project``.
        code: the code identities of the finished jobs, most jobs first (one unless mixed).
    """

    sweep_dir: str
    generated_at: str
    date: str
    ebr_version: str
    git_commit: str | None
    git_dirty: bool | None
    experiment_name: str | None
    technique: str | None
    control: bool
    page: str | None
    paper: dict[str, str]
    wandb_group: str | None
    wandb_project: str | None
    code: tuple[CodeUsed, ...] = ()


@dataclass(frozen=True)
class DataRead:
    """A data set the jobs of the sweep read.

    Args:
        name: the data set's name (``run.json`` info ``data_name``, else the ``data`` config choice).
        source: where it was read from (a folder, a file, "synthetic:<hash>"), None when unknown.
        recorded_in: "run.json" (what the job read) or "config" (what ``.hydra/`` says it would read).
        jobs: the job directories that read it.
    """

    name: str
    source: str | None
    recorded_in: str
    jobs: tuple[str, ...]


@dataclass(frozen=True)
class ReportArm:
    """An arm of the sweep.

    Args:
        label: its identity: the jobs' ``hydra.job.override_dirname`` (the wandb job type).
        short: the ``key=value`` pairs that differ between arms, for tables (the label itself
            when no key differs).
        values: override key -> value of the label.
    """

    label: str
    short: str
    values: dict[str, str]


@dataclass(frozen=True)
class ResultRow:
    """One metric of one arm.

    Args:
        n: seeds with a value.
        mean: mean over seeds, None when n = 0.
        std: sample standard deviation (n - 1), None when n < 2.
        values: seed -> value.
        missing_in: finished jobs of the arm that do not report the metric.
        is_baseline: whether the arm is the baseline.
        paper: the paper's reported delta for the arm, if the experiment states one.
        delta: the paired delta, None for the baseline or without one.
    """

    n: int
    mean: float | None
    std: float | None
    values: dict[str, float]
    missing_in: tuple[str, ...]
    is_baseline: bool
    paper: str | None
    delta: Delta | None


@dataclass(frozen=True)
class Problem:
    """A failed or missing run.

    Args:
        name: the job directory, or "ARM seed=S" for a hole in the arms x seeds grid.
        arm: the arm's label.
        seed: the seed, None when unknown.
        reason: one line saying what is wrong.
    """

    name: str
    arm: str
    seed: str | None
    reason: str


@dataclass(frozen=True)
class Method:
    """How the numbers were computed, in words, and the bootstrap's settings.

    Args:
        estimator: the delta estimator.
        interval: the primary (t) interval.
        bootstrap: the bootstrap interval, None when disabled.
        p_value: the test.
        level: confidence level.
        primary_interval: "t".
        n_bootstrap: bootstrap resamples (0: disabled).
        bootstrap_seed: numpy seed of the bootstrap.
    """

    estimator: str
    interval: str
    bootstrap: str | None
    p_value: str
    level: float
    primary_interval: str
    n_bootstrap: int
    bootstrap_seed: int


@dataclass(frozen=True)
class Report:
    """A sweep's report: what ``report.json`` holds.

    Args:
        meta: provenance and experiment metadata.
        data: the data sets the jobs read.
        arms: the arms in sweep order.
        arm_keys: override keys whose value differs between arms.
        seed_key: the override key that pairs runs.
        seeds: observed seeds.
        baseline: the baseline arm's label, None for means only.
        baseline_source: where the baseline came from, None without one.
        n_runs: job directories.
        expected_runs: the jobs the sweep was asked to run (its multirun.yaml; else arms x seeds).
        n_finished: jobs with metrics.
        failed: failed runs.
        missing: unfinished runs and holes in the grid.
        headline_metrics: the metrics with their own tables, in order.
        metrics: every tabulated metric, headline first.
        method: how the numbers were computed.
        notes: what the reader must know (gaps, exclusions, choices made).
        results: metric -> arm label -> row.
        worlds: the worlds of a sweep over several (``data.config.seed``; its `seeds` are then
            ``WORLD/SEED`` replicates), else empty.
        claims: what the sweep measured for each paper claim of the experiment.
    """

    meta: Provenance
    data: tuple[DataRead, ...]
    arms: tuple[ReportArm, ...]
    arm_keys: tuple[str, ...]
    seed_key: str
    seeds: tuple[str, ...]
    baseline: str | None
    baseline_source: str | None
    n_runs: int
    expected_runs: int
    n_finished: int
    failed: tuple[Problem, ...]
    missing: tuple[Problem, ...]
    headline_metrics: tuple[str, ...]
    metrics: tuple[str, ...]
    method: Method
    notes: tuple[str, ...]
    results: dict[str, dict[str, ResultRow]]
    worlds: tuple[str, ...] = ()
    claims: tuple[ClaimResult, ...] = ()

    @property
    def n_failed(self) -> int:
        return len(self.failed)

    @property
    def n_missing(self) -> int:
        return len(self.missing)

    @property
    def incomplete(self) -> bool:
        """Whether a run failed or is missing (``ebr-report`` then exits non-zero: ebr.report.cli)."""
        return bool(self.failed or self.missing)

    @property
    def arm_labels(self) -> list[str]:
        """The arms' labels in sweep order."""
        return [arm.label for arm in self.arms]

    def arm(self, label: str) -> ReportArm:
        """The arm with this label.

        Raises:
            KeyError: no arm has it.
        """
        for arm in self.arms:
            if arm.label == label:
                return arm
        raise KeyError(label)

    def short(self, label: str) -> str:
        """The short (table) label of an arm."""
        return self.arm(label).short

    def arm_order(self) -> list[ReportArm]:
        """Baseline first, then the other arms in sweep order."""
        return sorted(self.arms, key=lambda arm: arm.label != self.baseline)

    def title(self) -> str:
        """The technique, else the experiment name, else the sweep directory's name."""
        return self.meta.technique or self.meta.experiment_name or Path(self.meta.sweep_dir).name

    def data_label(self) -> str:
        """The data set read, for titles: its name, "several data sets", or "unknown data"."""
        names = list(dict.fromkeys(entry.name for entry in self.data))
        if not names:
            return "unknown data"
        return names[0] if len(self.data) == 1 else f"several data sets ({', '.join(names)})"

    def to_json(self) -> dict[str, Any]:
        """The ``report.json`` document (plain JSON types, keys in a fixed order)."""
        meta = self.meta
        return {
            "schema": SCHEMA,
            "sweep_dir": meta.sweep_dir,
            "generated_at": meta.generated_at,
            "date": meta.date,
            "ebr_version": meta.ebr_version,
            "git_commit": meta.git_commit,
            "git_dirty": meta.git_dirty,
            "code": [used.to_json() for used in meta.code],
            "experiment_name": meta.experiment_name,
            "technique": meta.technique,
            "control": meta.control,
            "page": meta.page,
            "paper": dict(meta.paper),
            "wandb_group": meta.wandb_group,
            "wandb_project": meta.wandb_project,
            "data": [
                {"name": d.name, "source": d.source, "recorded_in": d.recorded_in, "jobs": list(d.jobs)}
                for d in self.data
            ],
            "arm_keys": list(self.arm_keys),
            "seed_key": self.seed_key,
            "arms": self.arm_labels,
            "arm_short_labels": {arm.label: arm.short for arm in self.arms},
            "arm_values": {arm.label: dict(arm.values) for arm in self.arms},
            "seeds": list(self.seeds),
            "baseline": self.baseline,
            "baseline_source": self.baseline_source,
            "n_runs": self.n_runs,
            "expected_runs": self.expected_runs,
            "n_finished": self.n_finished,
            "n_failed": self.n_failed,
            "n_missing": self.n_missing,
            "failed": [_problem_json(p) for p in self.failed],
            "missing": [_problem_json(p) for p in self.missing],
            "headline_metrics": list(self.headline_metrics),
            "metrics": list(self.metrics),
            "method": {
                "estimator": self.method.estimator,
                "interval": self.method.interval,
                "bootstrap": self.method.bootstrap,
                "p_value": self.method.p_value,
                "level": self.method.level,
                "primary_interval": self.method.primary_interval,
                "n_bootstrap": self.method.n_bootstrap,
                "bootstrap_seed": self.method.bootstrap_seed,
            },
            "notes": list(self.notes),
            "results": {
                metric: {arm: _row_json(row) for arm, row in rows.items()}
                for metric, rows in self.results.items()
            },
            # a one-world sweep's report.json holds neither key (it is what it was before worlds)
            **({"world_key": WORLD_KEY, "worlds": list(self.worlds)} if self.worlds else {}),
            **({"claims": [claim_json(c) for c in self.claims]} if self.claims else {}),
        }

    def dumps(self) -> str:
        """``report.json``'s text; a NaN is refused (it would be a bug, never a number to write)."""
        return json.dumps(self.to_json(), indent=2, allow_nan=False, ensure_ascii=False) + "\n"


def claim_json(result: ClaimResult) -> dict[str, Any]:
    """``report.json``'s entry of a claim result.

    Args:
        result: the claim and what the sweep measured for it.
    """
    return {
        "claim": result.claim.to_json(),
        "arm": result.arm,
        "baseline": result.baseline,
        "problem": result.problem,
        "delta": None if result.delta is None else delta_json(result.delta),
        "offline": {metric: delta_json(d) for metric, d in result.offline.items()},
    }


def _problem_json(problem: Problem) -> dict[str, Any]:
    return {"name": problem.name, "arm": problem.arm, "seed": problem.seed, "reason": problem.reason}


def _row_json(row: ResultRow) -> dict[str, Any]:
    delta = row.delta
    return {
        "n": row.n,
        "mean": row.mean,
        "std": row.std,
        "values": dict(row.values),
        "missing_in": list(row.missing_in),
        "is_baseline": row.is_baseline,
        "paper": row.paper,
        "delta": None if delta is None else delta_json(delta),
    }
