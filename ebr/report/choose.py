"""What a report compares: the headline metrics and the baseline arm, from the command line or the
experiment's `report:` metadata."""

from __future__ import annotations

from typing import Any

import yaml

from ebr.report.sweep import Sweep, SweepError, parse_override

# used only when neither --metrics nor the experiment's report.metrics names the headline metrics
DEFAULT_HEADLINE = ("recall@100", "ndcg@100", "sim/engaged_sessions", "sim/repins")


def values_match(override_value: str, wanted: Any) -> bool:
    """Whether an override's text names the same value as `wanted` (a YAML scalar or text).

    ``0.0`` matches ``0``, ``true`` matches True; everything else compares as text.

    Args:
        override_value: the value part of a job's override, as Hydra wrote it.
        wanted: the value from ``report.baseline`` (a YAML scalar) or ``--baseline`` (text).
    """
    if str(wanted) == override_value:
        return True
    try:
        parsed = yaml.safe_load(override_value)
    except yaml.YAMLError:
        return False
    if isinstance(wanted, str):
        try:
            wanted = yaml.safe_load(wanted)
        except yaml.YAMLError:
            return False
    if isinstance(parsed, bool) or isinstance(wanted, bool):
        return parsed is wanted
    if isinstance(parsed, int | float) and isinstance(wanted, int | float):
        return float(parsed) == float(wanted)
    return parsed == wanted


def parse_baseline_args(items: list[str]) -> dict[str, str]:
    """``--baseline KEY=VALUE`` arguments (repeatable) as a dict.

    Args:
        items: the raw argument values.
    """
    out: dict[str, str] = {}
    for item in items:
        key, value = parse_override(item, "--baseline")
        out[key] = value
    return out


def find_baseline(sweep: Sweep, baseline: dict[str, Any]) -> str | None:
    """The arm whose values hold every `baseline` pair (override key -> value), or None if none does.

    The named pairs must single out one arm.

    Args:
        sweep: the loaded sweep.
        baseline: override key -> value.

    Raises:
        SweepError: the pairs name several arms.
    """
    matches = []
    for arm in sweep.arms:
        values = sweep.arm_values[arm]
        if all(key in values and values_match(values[key], wanted) for key, wanted in baseline.items()):
            matches.append(arm)
    if len(matches) > 1:
        raise SweepError(
            f"baseline {baseline} matches several arms ({'; '.join(matches)}); name every key that "
            f"differs between arms ({', '.join(sweep.arm_keys)})"
        )
    return matches[0] if matches else None


def choose_metrics(sweep: Sweep, requested: str | None, notes: list[str]) -> tuple[list[str], list[str]]:
    """(headline metrics, every metric to tabulate), headline first.

    Args:
        sweep: the loaded sweep.
        requested: the ``--metrics`` value or None.
        notes: receives what the report must say about the choice.

    Raises:
        SweepError: a requested metric is reported by no run.
    """
    available = sweep.metric_names()
    if requested is not None:
        headline = [name.strip() for name in requested.split(",") if name.strip()]
        if not headline:
            raise SweepError("--metrics is empty")
        unknown = [name for name in headline if name not in available]
        if unknown:
            known = ", ".join(available) or "none"
            raise SweepError(f"--metrics: {', '.join(unknown)} reported by no run (available: {known})")
    elif sweep.meta.metrics:
        headline = list(sweep.meta.metrics)
    else:
        headline = [name for name in DEFAULT_HEADLINE if name in available] or available[:4]
        if headline:
            notes.append(
                f"No headline metrics named by the experiment or --metrics; showing {', '.join(headline)}."
            )
    rest = sorted(name for name in available if name not in headline)
    return headline, [*headline, *rest]


def choose_baseline(
    sweep: Sweep, cli_baseline: list[str] | None, notes: list[str]
) -> tuple[str | None, str | None]:
    """(baseline arm label or None, where it came from).

    Args:
        sweep: the loaded sweep.
        cli_baseline: ``--baseline`` values or None.
        notes: receives why there is no baseline, when there is none.

    Raises:
        SweepError: ``--baseline`` names no arm, or a baseline names several arms.
    """
    if cli_baseline:
        wanted = parse_baseline_args(cli_baseline)
        arm = find_baseline(sweep, wanted)
        if arm is None:
            raise SweepError(
                f"--baseline {' '.join(cli_baseline)} names no arm of {sweep.path} "
                f"(arms: {'; '.join(sweep.arms)})"
            )
        return arm, "--baseline"
    if sweep.meta.baseline:
        arm = find_baseline(sweep, sweep.meta.baseline)
        if arm is None:
            notes.append(
                f"The experiment's baseline {sweep.meta.baseline} is not an arm of this sweep "
                f"(arms: {'; '.join(sweep.arms)}); per-arm means only, no deltas."
            )
            return None, None
        return arm, "experiment config report.baseline"
    notes.append(
        "No baseline named (report.baseline is null and no --baseline): per-arm means only, no deltas."
    )
    return None, None
