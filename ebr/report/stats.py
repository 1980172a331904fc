"""Per-arm means and seed-paired relative deltas with confidence intervals and p-values.

Estimator: for an arm A, the baseline B and a metric, let S be the seeds where both A and B have a
finished run reporting the metric and B's value is nonzero. The reported delta is
``mean over s in S of (A_s - B_s) / B_s`` (the mean of per-seed relative deltas, not the ratio of
means), with ``n = |S|`` pairs. Its 95% interval is the paired t interval on those per-seed deltas,
``mean ± t_{0.975, n-1} · sd / sqrt(n)`` (sd with n - 1 degrees of freedom); the paired bootstrap
percentile interval (seed pairs resampled with replacement) is reported beside it from
MIN_BOOTSTRAP_PAIRS = 5 pairs on (with fewer, the resamples take so few distinct values that the
interval is far narrower than the t interval and contradicts the p-value: n/a). The p-value is the
two-sided paired t test, i.e. a one-sample t test of the per-seed relative deltas against 0, so it
agrees with the t interval. With fewer than 2 pairs no interval or p-value exists.

A metric whose every value (arm and baseline) is non-negative cannot fall by more than 100%: the
lower bound of its intervals is clipped at -100% and the delta marked `clipped`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from ebr.report.pooled import PooledDelta
from ebr.report.sweep import UNSET, Sweep

LEVEL = 0.95
DEFAULT_BOOTSTRAP = 10_000
# the bootstrap interval is reported from this many seed pairs on
MIN_BOOTSTRAP_PAIRS = 5
# the relative delta of a non-negative metric is bounded below by this (-100%)
LOWEST_RELATIVE_DELTA = -1.0

ESTIMATOR = (
    "Relative delta of an arm = mean over seeds s of (arm_s - baseline_s) / baseline_s, over the seeds "
    "where both the arm and the baseline have a finished run reporting the metric and the baseline value is "
    "nonzero (n = number of such seed pairs). Mean and std of an arm are over its seeds (std with n - 1)."
)
T_METHOD = (
    "95% CI (primary): paired t interval on the per-seed relative deltas, "
    "mean ± t(0.975, n-1) · sd / sqrt(n)."
)
BOOTSTRAP_METHOD = (
    "95% bootstrap CI: percentile interval of the mean relative delta over {n_boot} resamples of seed pairs "
    "with replacement (numpy seed {seed}); shown only from {min_pairs} seed pairs on (n/a below: with few "
    "pairs it is far narrower than the t interval and contradicts the p-value)."
)
CLIP_NOTE = (
    "An interval bound marked * was clipped at -100%: every value of the metric is non-negative, so the arm "
    "cannot fall by more than 100% (the t interval, symmetric by construction, extends below)."
)
P_METHOD = (
    "p-value: two-sided paired t test, i.e. scipy.stats.ttest_1samp of the per-seed relative deltas against "
    "0 (consistent with the t interval)."
)


@dataclass(frozen=True)
class PairedDelta:
    """An arm's relative delta against the baseline, paired by seed.

    Args:
        n_pairs: number of seed pairs used.
        mean: mean of the per-seed relative deltas (a fraction: 0.01 is +1%), None without pairs.
        per_seed: seed -> relative delta.
        t_ci: paired t interval, None with fewer than 2 pairs.
        bootstrap_ci: paired bootstrap percentile interval, None with fewer than 2 pairs or no bootstrap.
        p_value: two-sided paired t test p-value, None with fewer than 2 pairs or zero variance.
        excluded: seed -> why that seed of the arm is not paired.
        clipped: an interval's lower bound was raised to -100% (a non-negative metric).
        pooled: over several worlds, the delta pooled over them (`ebr.report.hierarchy`), else None.
    """

    n_pairs: int
    mean: float | None
    per_seed: dict[str | None, float]
    t_ci: tuple[float, float] | None
    bootstrap_ci: tuple[float, float] | None
    p_value: float | None
    excluded: dict[str | None, str]
    clipped: bool = False
    pooled: PooledDelta | None = None


@dataclass(frozen=True)
class ArmSummary:
    """One arm and one metric.

    Args:
        arm: arm label.
        metric: metric name.
        n: number of seeds with a value.
        mean: mean over seeds, None when n = 0.
        std: sample standard deviation over seeds (n - 1), None when n < 2.
        values: seed -> value.
        missing_in: finished jobs of this arm that do not report the metric.
        is_baseline: whether this is the baseline arm.
        paper: the paper's reported delta for this arm, if the experiment states one.
        delta: paired relative delta against the baseline (None for the baseline or without one).
    """

    arm: str
    metric: str
    n: int
    mean: float | None
    std: float | None
    values: dict[str | None, float]
    missing_in: list[str]
    is_baseline: bool
    paper: str | None
    delta: PairedDelta | None


def mean_std(values: np.ndarray) -> tuple[int, float | None, float | None]:
    """(n, mean, sample std with n - 1 degrees of freedom); None where undefined.

    Args:
        values: 1-d array of per-seed values.
    """
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    mean = float(values.mean()) if n else None
    std = float(values.std(ddof=1)) if n >= 2 else None
    return n, mean, std


def t_interval(deltas: np.ndarray, level: float = LEVEL) -> tuple[float, float] | None:
    """Two-sided t interval for the mean of `deltas`; None with fewer than 2 values.

    Args:
        deltas: per-seed relative deltas.
        level: confidence level.
    """
    deltas = np.asarray(deltas, dtype=np.float64)
    n = len(deltas)
    if n < 2:
        return None
    half = float(sps.t.ppf(0.5 + level / 2, n - 1)) * float(deltas.std(ddof=1)) / np.sqrt(n)
    mean = float(deltas.mean())
    return mean - half, mean + half


def paired_t_pvalue(deltas: np.ndarray) -> float | None:
    """Two-sided p-value of the one-sample t test of `deltas` against 0.

    None with fewer than 2 values or when every delta is equal (the t statistic is undefined).

    Args:
        deltas: per-seed relative deltas.
    """
    deltas = np.asarray(deltas, dtype=np.float64)
    if len(deltas) < 2 or float(deltas.std(ddof=1)) == 0.0:
        return None
    return float(sps.ttest_1samp(deltas, 0.0).pvalue)


def bootstrap_interval(
    deltas: np.ndarray, n_boot: int, seed: int, level: float = LEVEL
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of `deltas`, resampling seed pairs with replacement.

    None with fewer than MIN_BOOTSTRAP_PAIRS values (or `n_boot` 0).

    Args:
        deltas: per-seed relative deltas.
        n_boot: number of resamples; 0 disables the bootstrap.
        seed: numpy seed, so a report is reproducible.
        level: confidence level.
    """
    deltas = np.asarray(deltas, dtype=np.float64)
    n = len(deltas)
    if n < MIN_BOOTSTRAP_PAIRS or n_boot <= 0:
        return None
    rng = np.random.default_rng(seed)
    means = deltas[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
    low, high = np.quantile(means, [0.5 - level / 2, 0.5 + level / 2])
    return float(low), float(high)


def paired_delta(
    arm_values: dict[str | None, float],
    base_values: dict[str | None, float],
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    level: float = LEVEL,
) -> PairedDelta:
    """Relative delta of an arm against the baseline, paired by seed.

    Args:
        arm_values: seed -> the arm's value.
        base_values: seed -> the baseline's value.
        n_boot: bootstrap resamples (0 disables).
        seed: bootstrap seed.
        level: confidence level.
    """
    excluded: dict[str | None, str] = {}
    seeds = []
    for s in arm_values:
        if s not in base_values:
            excluded[s] = "no baseline value for this seed"
        elif base_values[s] == 0.0:
            excluded[s] = "baseline value is 0 (relative delta undefined)"
        else:
            seeds.append(s)
    arm = np.array([arm_values[s] for s in seeds], dtype=np.float64)
    base = np.array([base_values[s] for s in seeds], dtype=np.float64)
    deltas = (arm - base) / base
    t_ci = t_interval(deltas, level)
    bootstrap_ci = bootstrap_interval(deltas, n_boot, seed, level)
    clipped = False
    values = [*arm_values.values(), *base_values.values()]
    if values and min(values) >= 0:
        (t_ci, t_clipped), (bootstrap_ci, b_clipped) = clip_interval(t_ci), clip_interval(bootstrap_ci)
        clipped = t_clipped or b_clipped
    return PairedDelta(
        n_pairs=len(seeds),
        mean=float(deltas.mean()) if len(seeds) else None,
        per_seed={s: float(d) for s, d in zip(seeds, deltas)},
        t_ci=t_ci,
        bootstrap_ci=bootstrap_ci,
        p_value=paired_t_pvalue(deltas),
        excluded=excluded,
        clipped=clipped,
    )


def clip_interval(ci: tuple[float, float] | None) -> tuple[tuple[float, float] | None, bool]:
    """A relative-delta interval of a non-negative metric with its lower bound at -100% or above.

    Returns:
        (interval, whether it was clipped).
    """
    if ci is None or ci[0] >= LOWEST_RELATIVE_DELTA:
        return ci, False
    return (LOWEST_RELATIVE_DELTA, max(ci[1], LOWEST_RELATIVE_DELTA)), True


def paper_for_arm(
    paper: dict[str, str], arm: str, values: dict[str, str], short: str | None = None
) -> str | None:
    """The paper's reported delta for an arm: by full label, short label, then ``key=value``, then value.

    Args:
        paper: the ``report.paper`` mapping.
        arm: the arm label.
        values: the arm's {key: value} for the keys that tell the arms apart.
        short: the arm's short label, if it has one.
    """
    labels = [arm] if short is None else [arm, short]
    candidates = [*labels, *(f"{k}={v}" for k, v in values.items()), *values.values()]
    for candidate in candidates:
        if candidate in paper:
            return paper[candidate]
    return None


def _telling_values(sweep: Sweep, arm: str) -> dict[str, str]:
    """The arm's values of the keys that differ between arms (all its values when none differ).

    A key every arm shares (``data=...``) names no arm, so the paper is not looked up by it.
    """
    values = sweep.arm_values[arm]
    return {key: values.get(key, UNSET) for key in sweep.arm_keys} or dict(values)


def _gap_reason(sweep: Sweep, baseline: str, seed: str | None, metric: str) -> str:
    """Why the baseline has no value for `seed` (more specific than 'no baseline value')."""
    job = sweep.cells.get((baseline, seed))
    if job is None:
        return "baseline run missing (no job directory)"
    if job.status == "failed":
        return f"baseline run {job.name} failed"
    if job.status == "missing":
        return f"baseline run {job.name} did not finish"
    return f"baseline run {job.name} does not report {metric}"


def summarize_sweep(
    sweep: Sweep,
    baseline: str | None,
    metrics: list[str],
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> dict[str, dict[str, ArmSummary]]:
    """Per metric and arm: n, mean, std and the paired delta against `baseline`.

    Args:
        sweep: the loaded sweep.
        baseline: the baseline arm label, or None for means only.
        metrics: metric names to summarise.
        n_boot: bootstrap resamples (0 disables).
        seed: bootstrap seed.
    """
    out: dict[str, dict[str, ArmSummary]] = {}
    for metric in metrics:
        base_values = sweep.finished_values(baseline, metric) if baseline is not None else {}
        rows: dict[str, ArmSummary] = {}
        for arm in sweep.arms:
            values = sweep.finished_values(arm, metric)
            n, mean, std = mean_std(np.array(list(values.values())))
            missing_in = [
                job.name
                for (label, _), job in sweep.cells.items()
                if label == arm and job.metrics is not None and metric not in job.metrics
            ]
            delta = None
            if baseline is not None and arm != baseline:
                raw = paired_delta(values, base_values, n_boot, seed)
                excluded = {
                    s: (_gap_reason(sweep, baseline, s, metric) if s not in base_values else why)
                    for s, why in raw.excluded.items()
                }
                delta = PairedDelta(
                    raw.n_pairs,
                    raw.mean,
                    raw.per_seed,
                    raw.t_ci,
                    raw.bootstrap_ci,
                    raw.p_value,
                    excluded,
                    raw.clipped,
                    _pooled(sweep, raw.per_seed, n_boot, seed),
                )
            rows[arm] = ArmSummary(
                arm=arm,
                metric=metric,
                n=n,
                mean=mean,
                std=std,
                values=values,
                missing_in=missing_in,
                is_baseline=arm == baseline,
                paper=paper_for_arm(sweep.meta.paper, arm, _telling_values(sweep, arm), sweep.arm_short[arm]),
                delta=delta,
            )
        out[metric] = rows
    return out


def _pooled(sweep: Sweep, per_pair: dict[str | None, float], n_boot: int, seed: int) -> PooledDelta | None:
    """The delta pooled over the sweep's worlds, None for a one-world sweep."""
    if not sweep.worlds:
        return None
    # imported here: ebr.report.hierarchy builds on this module's t interval
    from ebr.report.hierarchy import pooled_delta

    return pooled_delta(per_pair, sweep.world_of, sweep.worlds, n_boot, seed)
