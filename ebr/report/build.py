"""The `Report` of a sweep from its loaded runs and their statistics."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import metadata

from ebr.report import stats
from ebr.report.code import CodeUsed
from ebr.report.document import (
    UNKNOWN_SEED,
    Delta,
    Method,
    Provenance,
    Report,
    ReportArm,
    ResultRow,
)
from ebr.report.pooled import ClaimResult
from ebr.report.stats import ArmSummary, PairedDelta
from ebr.report.sweep import SEED_KEY, Sweep


def ebr_version() -> str:
    """The installed ebr distribution's version ("unknown" when it is not installed)."""
    try:
        return metadata.version("ebr")
    except metadata.PackageNotFoundError:
        return "unknown"


def _seed_key(seed: str | None) -> str:
    return UNKNOWN_SEED if seed is None else seed


def _delta(delta: PairedDelta | None) -> Delta | None:
    if delta is None:
        return None
    pooled = delta.pooled
    return Delta(
        n_pairs=delta.n_pairs,
        rel_mean=delta.mean,
        t_ci=delta.t_ci,
        bootstrap_ci=delta.bootstrap_ci,
        p_value=delta.p_value,
        per_seed={_seed_key(s): d for s, d in delta.per_seed.items()},
        excluded={_seed_key(s): why for s, why in delta.excluded.items()},
        clipped=delta.clipped,
        pooled=pooled,
    )


def _claim(result: ClaimResult) -> ClaimResult:
    """A claim result with its `stats.PairedDelta`s as report `Delta`s."""
    return ClaimResult(
        claim=result.claim,
        arm=result.arm,
        baseline=result.baseline,
        delta=_delta(result.delta),
        offline={metric: _delta(d) for metric, d in result.offline.items()},
        problem=result.problem,
    )


def _row(row: ArmSummary) -> ResultRow:
    return ResultRow(
        n=row.n,
        mean=row.mean,
        std=row.std,
        values={_seed_key(s): v for s, v in row.values.items()},
        missing_in=tuple(row.missing_in),
        is_baseline=row.is_baseline,
        paper=row.paper,
        delta=_delta(row.delta),
    )


def _summary_notes(
    summaries: dict[str, dict[str, ArmSummary]], baseline: str | None, short: dict[str, str]
) -> list[str]:
    notes = []
    for metric, rows in summaries.items():
        if all(row.n == 0 for row in rows.values()):
            notes.append(f"No finished run reports {metric}.")
            continue
        if all(row.n and row.mean == 0.0 and not row.std for row in rows.values()):
            # a flag or count that is 0 in every run (e.g. eval/refit off) has no delta to explain
            notes.append(f"{metric} is 0 in every run: no relative deltas.")
            continue
        for arm, row in rows.items():
            name = short[arm]
            if row.missing_in:
                notes.append(f"{metric} is missing in job(s) {', '.join(row.missing_in)} ({name}).")
            if row.delta is None:
                continue
            for seed, why in row.delta.excluded.items():
                notes.append(
                    f"{metric}, {name}: seed {_seed_key(seed)} excluded from the paired delta: {why}."
                )
            if row.delta.n_pairs < 2 and baseline is not None:
                pairs = row.delta.n_pairs
                notes.append(f"{metric}, {name}: {pairs} seed pair(s); intervals and p-value n/a.")
    return notes


def _sweep_commit(code: list[CodeUsed]) -> tuple[str | None, bool | None]:
    """(commit, uncommitted changes?) of the code the sweep's jobs ran; (None, None) unless one."""
    commit = code[0].git_commit if len(code) == 1 else None
    return commit, None if commit is None else code[0].git_diff_sha256 is not None


def _method(n_boot: int, seed: int) -> Method:
    """How the numbers were computed, in words (the bootstrap's only when it ran)."""
    return Method(
        estimator=stats.ESTIMATOR,
        interval=stats.T_METHOD,
        bootstrap=stats.BOOTSTRAP_METHOD.format(n_boot=n_boot, seed=seed, min_pairs=stats.MIN_BOOTSTRAP_PAIRS)
        if n_boot > 0
        else None,
        p_value=stats.P_METHOD,
        level=stats.LEVEL,
        primary_interval="t",
        n_bootstrap=n_boot,
        bootstrap_seed=seed,
    )


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
    code: list[CodeUsed] | None = None,
    claims: list[ClaimResult] | None = None,
) -> Report:
    """The report of a sweep.

    Args:
        sweep: the loaded sweep.
        summaries: `stats.summarize_sweep` output for every metric.
        baseline: baseline arm label or None.
        baseline_source: where the baseline came from ("experiment config", "--baseline") or None.
        headline: headline metrics, in order.
        n_boot: bootstrap resamples used.
        seed: bootstrap seed used.
        notes: extra notes to state (e.g. why there is no baseline).
        code: the code identities of the finished jobs (`ebr.report.code.code_used`); the report
            states the commit when there is one, and lists them all.
        claims: what the sweep measured for the experiment's paper claims (`ebr.report.claims`).
    """
    now = datetime.now(UTC)
    code = code or []
    commit, dirty = _sweep_commit(code)
    meta = sweep.meta
    provenance = Provenance(
        sweep_dir=str(sweep.path.resolve()),
        generated_at=now.isoformat(timespec="seconds"),
        date=now.date().isoformat(),
        ebr_version=ebr_version(),
        git_commit=commit,
        git_dirty=dirty,
        experiment_name=meta.experiment_name,
        technique=meta.technique,
        control=meta.control,
        page=meta.page,
        paper=dict(meta.paper),
        wandb_group=meta.wandb_group,
        wandb_project=meta.wandb_project,
        code=tuple(code),
    )
    method = _method(n_boot, seed)
    return Report(
        meta=provenance,
        data=tuple(sweep.data),
        arms=tuple(
            ReportArm(label, sweep.arm_short[label], dict(sweep.arm_values[label])) for label in sweep.arms
        ),
        arm_keys=tuple(sweep.arm_keys),
        seed_key=SEED_KEY,
        seeds=tuple(sweep.seeds),
        baseline=baseline,
        baseline_source=baseline_source,
        n_runs=len(sweep.jobs),
        expected_runs=sweep.expected_runs,
        n_finished=sweep.n_finished,
        failed=tuple(sweep.failed),
        missing=tuple(sweep.missing),
        headline_metrics=tuple(headline),
        metrics=tuple(summaries),
        method=method,
        notes=(*sweep.notes, *notes, *_summary_notes(summaries, baseline, sweep.arm_short)),
        results={metric: {arm: _row(row) for arm, row in rows.items()} for metric, rows in summaries.items()},
        worlds=tuple(sweep.worlds),
        claims=tuple(_claim(result) for result in claims or []),
    )
