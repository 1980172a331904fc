"""A paper's claims as an experiment declares them (``report.claims``) and what a sweep measured for each.

Schema (a list under the experiment's ``report:`` node)::

    claims:
      - name: masknet                      # optional: a short name for tables
        arm: {model/crossing: masknet}     # override key -> value naming the arm (null: not overridden)
        baseline: {model/crossing: mlp}    # optional: defaults to report.baseline
        metric: sim/engaged_sessions       # the paper's metric as ebr measures it
        direction: "+"                     # "+": the arm above the baseline; "-": below
        paper: "engaged sessions +0.15% to +0.35% (online)"
        offline: [recall@100, ndcg@100]    # optional: defaults to report.metrics' recall@/ndcg@ ones

The verdict on a claim (`ebr.report.verdict`) reads the paired delta on `metric`, pooled over worlds
when the sweep has several, and the same for the `offline` metrics.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ebr.report.choose import values_match
from ebr.report.hierarchy import pooled_delta
from ebr.report.pooled import ClaimResult
from ebr.report.stats import DEFAULT_BOOTSTRAP, PairedDelta, paired_delta

if TYPE_CHECKING:
    from ebr.report.sweep import Sweep


def find_arm(sweep: Sweep, wanted: dict[str, Any]) -> tuple[str | None, str | None]:
    """(the one arm whose values hold every pair of `wanted`, why none) ; a null value: key not overridden.

    Args:
        sweep: the loaded sweep.
        wanted: override key -> value.
    """
    matches = []
    for arm in sweep.arms:
        values = sweep.arm_values[arm]
        if all(
            (key not in values) if want is None else (key in values and values_match(values[key], want))
            for key, want in wanted.items()
        ):
            matches.append(arm)
    if len(matches) == 1:
        return matches[0], None
    if not matches:
        return None, f"no arm of the sweep matches {wanted}"
    return None, f"{wanted} matches several arms ({'; '.join(matches)}): name every key that differs"


def _delta(sweep: Sweep, arm: str, base: str, metric: str, n_boot: int, seed: int) -> PairedDelta:
    raw = paired_delta(sweep.finished_values(arm, metric), sweep.finished_values(base, metric), n_boot, seed)
    if not sweep.worlds:
        return raw
    return replace(raw, pooled=pooled_delta(raw.per_seed, sweep.world_of, sweep.worlds, n_boot, seed))


def claim_results(sweep: Sweep, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> list[ClaimResult]:
    """What the sweep measured for each of its experiment's claims (deltas as `PairedDelta`).

    Args:
        sweep: the loaded sweep.
        n_boot: bootstrap draws.
        seed: bootstrap seed.
    """
    out = []
    for claim in sweep.meta.claims:
        arm, why_arm = find_arm(sweep, claim.arm)
        base, why_base = find_arm(sweep, claim.baseline)
        if arm is None or base is None:
            problem = "; ".join(
                f"{kind}: {why}" for kind, why in (("arm", why_arm), ("baseline", why_base)) if why
            )
            out.append(ClaimResult(claim, arm, base, None, {}, problem))
            continue
        delta = _delta(sweep, arm, base, claim.metric, n_boot, seed)
        offline = {m: _delta(sweep, arm, base, m, n_boot, seed) for m in claim.offline}
        problem = None if delta.n_pairs else f"no finished (arm, baseline) pair reports {claim.metric}"
        out.append(ClaimResult(claim, arm, base, delta, offline, problem))
    return out
