"""The verdict rule: the one place that turns a claim's measured deltas into a verdict word.

For a paper claim (arm vs baseline on the paper's metric, in the paper's direction), with the
*pooled interval* the hierarchical bootstrap interval over worlds (`ebr.report.hierarchy`) when the
sweep ran several worlds, else the paired t interval over training seeds:

- ``reproduced``: the pooled interval excludes 0 in the paper's direction and every world's delta
  has the paper's sign;
- ``partly``: the pooled interval excludes 0 in the paper's direction but a world's delta has the
  other sign; or the paper's metric does not move that way while an offline metric (recall, ndcg)
  does (its pooled interval excludes 0 in the paper's direction);
- ``not reproduced``: otherwise (an interval covering 0, or excluding it the other way);
- ``no result``: the sweep holds no interval for the claim (an arm absent, fewer than 2 pairs).

The knob-off control sweep's delta for the same claim: ``control holds`` when its pooled interval
covers 0 or excludes it against the paper's direction (the gain vanishes or reverses), ``control
fails`` when it excludes 0 in the paper's direction, ``no control`` without a control result.
"""

from __future__ import annotations

from ebr.report.pooled import ClaimResult, Delta

REPRODUCED, PARTLY, NOT_REPRODUCED, NO_RESULT = "reproduced", "partly", "not reproduced", "no result"
CONTROL_HOLDS, CONTROL_FAILS, NO_CONTROL = "control holds", "control fails", "no control"

RULE = (
    "reproduced: the pooled 95% interval on the paper's metric excludes 0 in the paper's direction and "
    "every world's delta has the paper's sign; partly: it excludes 0 that way but a world disagrees in "
    "sign, or only offline metrics (recall/ndcg) move in the paper's direction; not reproduced: "
    "otherwise. control holds: the knob-off sweep's pooled interval covers 0 or reverses; control "
    "fails: it excludes 0 in the paper's direction."
)


def pooled_estimate(delta: Delta | None) -> tuple[float | None, tuple[float, float] | None]:
    """(pooled mean, pooled interval) of a delta: over worlds when it has them, else over seeds.

    Args:
        delta: a report delta, or None.
    """
    if delta is None:
        return None, None
    if delta.pooled is not None:
        return delta.pooled.mean, delta.pooled.ci
    return delta.rel_mean, delta.t_ci


def world_signs(delta: Delta) -> list[int]:
    """The sign of each world's delta (one entry, the seed mean's sign, for a one-world sweep).

    Args:
        delta: a report delta.
    """
    if delta.pooled is not None:
        return [_sign(w.mean) for w in delta.pooled.worlds if w.mean is not None]
    return [] if delta.rel_mean is None else [_sign(delta.rel_mean)]


def _sign(value: float | None) -> int:
    return 0 if not value else (1 if value > 0 else -1)


def excludes_zero_towards(ci: tuple[float, float] | None, sign: int) -> bool:
    """Whether `ci` lies entirely on the `sign` side of 0.

    Args:
        ci: (low, high) or None.
        sign: +1 or -1.
    """
    if ci is None:
        return False
    return ci[0] > 0 if sign > 0 else ci[1] < 0


def claim_verdict(result: ClaimResult | None) -> str:
    """The verdict word of a claim from what the ablation sweep measured.

    Args:
        result: the ablation sweep's result for the claim, None when the sweep is absent.
    """
    if result is None or result.delta is None:
        return NO_RESULT
    sign = result.claim.sign
    _, ci = pooled_estimate(result.delta)
    offline_moves = any(excludes_zero_towards(pooled_estimate(d)[1], sign) for d in result.offline.values())
    if ci is None:
        return PARTLY if offline_moves else NO_RESULT
    if excludes_zero_towards(ci, sign):
        signs = world_signs(result.delta)
        return REPRODUCED if all(s == sign for s in signs) else PARTLY
    return PARTLY if offline_moves else NOT_REPRODUCED


def control_verdict(result: ClaimResult | None) -> str:
    """Whether the knob-off control behaves: the claimed gain vanishes or reverses.

    Args:
        result: the control sweep's result for the same claim, None without a control.
    """
    if result is None or result.delta is None:
        return NO_CONTROL
    _, ci = pooled_estimate(result.delta)
    if ci is None:
        return NO_CONTROL
    return CONTROL_FAILS if excludes_zero_towards(ci, result.claim.sign) else CONTROL_HOLDS
