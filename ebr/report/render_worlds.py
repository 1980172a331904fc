"""The parts of ``report.md`` for a sweep over several worlds and for the experiment's paper claims."""

from __future__ import annotations

from ebr.report.document import Report
from ebr.report.hierarchy import HIERARCHICAL_METHOD
from ebr.report.pooled import ClaimResult, Delta, PooledDelta
from ebr.report.verdict import RULE, claim_verdict, pooled_estimate


def fmt_pct(value: float | None) -> str:
    """A relative delta (fraction) as a signed percentage with 2 decimals, "n/a" for None.

    Args:
        value: the fraction, or None.
    """
    return "n/a" if value is None else f"{100 * value:+.2f}%"


def fmt_ci(ci: tuple[float, float] | None) -> str:
    """An interval of fractions as "[lo%, hi%]", "n/a" for None.

    Args:
        ci: (low, high), or None.
    """
    return "n/a" if ci is None else f"[{fmt_pct(ci[0])}, {fmt_pct(ci[1])}]"


def agree_text(pooled: PooledDelta) -> str:
    """ "k of n" worlds agreeing with the pooled delta (its sign, an interval excluding 0), then in how
    many the delta merely has that sign (what the verdict rule asks of every world).

    Args:
        pooled: the pooled delta.
    """
    sign = 0 if not pooled.mean else (1 if pooled.mean > 0 else -1)
    same = sum(1 for w in pooled.worlds if w.mean and (1 if w.mean > 0 else -1) == sign)
    return f"{pooled.n_agree} of {len(pooled.worlds)} (sign: {same} of {len(pooled.worlds)})"


def pooled_text(delta: Delta | None) -> str:
    """ "Δ [lo, hi]" of a delta's pooled estimate (over worlds when it has them), "n/a" without one.

    Args:
        delta: a report delta, or None.
    """
    mean, ci = pooled_estimate(delta)
    return "n/a" if mean is None else f"{fmt_pct(mean)} {fmt_ci(ci)}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def method_lines(report: Report) -> list[str]:
    """The Method bullet of a multi-world sweep (nothing for one world).

    Args:
        report: the report.
    """
    if not report.worlds:
        return []
    method = report.method
    text = HIERARCHICAL_METHOD.format(n_boot=method.n_bootstrap, seed=method.bootstrap_seed)
    return [
        f"- {text}",
        f"- Worlds: {', '.join(report.worlds)}; a replicate is `WORLD/SEED`, and the columns Δ and CI of "
        "the tables below pool every (world, seed) pair as one level (shown for reference only).",
    ]


def world_tables(report: Report) -> list[str]:
    """Per headline metric: each arm's pooled delta, its intervals, k of n worlds and each world's delta.

    Args:
        report: the report (nothing is written for a one-world sweep or one without a baseline).
    """
    if not report.worlds or report.baseline is None:
        return []
    lines = ["## Pooled over worlds", ""]
    header = ["arm", "pooled Δ", "95% CI (hierarchical bootstrap)", "95% CI (t, world means)", "agrees in"]
    header += [f"world {w}" for w in report.worlds]
    for metric in report.headline_metrics:
        lines += [f"### {metric}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for arm in report.arm_order():
            row = report.results[metric][arm.label]
            pooled = None if row.delta is None else row.delta.pooled
            if pooled is None:
                continue
            by_world = {w.world: w for w in pooled.worlds}
            cells = [arm.short, fmt_pct(pooled.mean), fmt_ci(pooled.ci), fmt_ci(pooled.world_t_ci)]
            cells.append(agree_text(pooled))
            for world in report.worlds:
                w = by_world.get(world)
                cells.append("n/a" if w is None else f"{fmt_pct(w.mean)} {fmt_ci(w.t_ci)} (n={w.n_pairs})")
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        lines.append("")
    return lines


def claim_name(result: ClaimResult) -> str:
    """ "ARM vs BASELINE" of a claim, from its declared values.

    Args:
        result: the claim's result.
    """
    claim = result.claim
    # YAML spelling of the values (false, not Python's False), as the experiment file writes them
    base = ",".join(str(v).lower() if isinstance(v, bool) else str(v) for v in claim.baseline.values())
    return f"{claim.name} vs {base}"


def claim_lines(report: Report) -> list[str]:
    """The experiment's paper claims: the measured delta on the paper's metric and the verdict word.

    Args:
        report: the report (nothing is written without claims).
    """
    if not report.claims:
        return []
    header = ["claim", "metric", "paper (reported)", "ebr Δ [95% CI]", "worlds agreeing", "verdict"]
    lines = ["## Paper claims", "", f"Verdict rule (ebr.report.verdict): {RULE}", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in report.claims:
        delta = result.delta
        pooled = None if delta is None else delta.pooled
        agree = "1 world" if pooled is None else agree_text(pooled)
        measured = result.problem or pooled_text(delta)
        cells = [claim_name(result), result.claim.metric, result.claim.paper, measured, agree]
        cells.append(claim_verdict(result) + ("" if report.meta.control is False else " (control sweep)"))
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return [*lines, ""]
