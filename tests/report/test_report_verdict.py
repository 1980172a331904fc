"""The verdict rule (ebr.report.verdict) on made-up pooled results: every word is reachable."""

from __future__ import annotations

import pytest

from ebr.report.pooled import Claim, ClaimResult, Delta, PooledDelta, WorldDelta
from ebr.report.verdict import (
    CONTROL_FAILS,
    CONTROL_HOLDS,
    NO_CONTROL,
    NO_RESULT,
    NOT_REPRODUCED,
    PARTLY,
    REPRODUCED,
    claim_verdict,
    control_verdict,
)

CLAIM = Claim({"model/crossing": "masknet"}, {"model/crossing": "mlp"}, "sim/repins", "+", "repins +1%")


def _delta(ci: tuple[float, float] | None, world_means: list[float] | None = None) -> Delta:
    """A delta with pooled interval `ci` over worlds of these means (one world: no pooling)."""
    mean = None if ci is None else sum(ci) / 2
    pooled = None
    if world_means is not None:
        worlds = tuple(WorldDelta(str(i), 3, m, None, False) for i, m in enumerate(world_means))
        pooled = PooledDelta(len(worlds), mean, ci, None, worlds)
    return Delta(3, mean, ci, None, None, {}, {}, False, pooled)


def _result(
    delta: Delta | None, offline: dict[str, Delta] | None = None, claim: Claim = CLAIM
) -> ClaimResult:
    return ClaimResult(claim, "a", "b", delta, offline or {})


@pytest.mark.parametrize(
    ("delta", "offline", "word"),
    [
        (_delta((0.01, 0.03), [0.02, 0.01, 0.03]), {}, REPRODUCED),
        (_delta((0.01, 0.03)), {}, REPRODUCED),  # one world: the seeds' t interval
        (_delta((0.001, 0.03), [0.02, -0.001, 0.03]), {}, PARTLY),  # a world disagrees in sign
        (_delta((-0.01, 0.03), [0.02, 0.0, 0.01]), {"recall@100": _delta((0.01, 0.02), [0.01] * 3)}, PARTLY),
        (
            _delta((-0.01, 0.03), [0.02, 0.0, 0.01]),
            {"recall@100": _delta((-0.01, 0.02), [0.01] * 3)},
            NOT_REPRODUCED,
        ),
        (_delta((-0.03, -0.01), [-0.02] * 3), {}, NOT_REPRODUCED),  # the other way
        (_delta(None), {}, NO_RESULT),
        (None, {}, NO_RESULT),
    ],
)
def test_claim_verdict(delta, offline, word) -> None:
    assert claim_verdict(_result(delta, offline)) == word


def test_claimed_decrease_and_controls() -> None:
    down = Claim(CLAIM.arm, CLAIM.baseline, "m", "-", "m falls")
    assert claim_verdict(_result(_delta((-0.03, -0.01), [-0.02] * 3), claim=down)) == REPRODUCED
    assert control_verdict(_result(_delta((-0.01, 0.01), [0.0] * 3))) == CONTROL_HOLDS
    assert control_verdict(_result(_delta((-0.03, -0.01), [-0.02] * 3))) == CONTROL_HOLDS  # reverses
    assert control_verdict(_result(_delta((0.01, 0.03), [0.02] * 3))) == CONTROL_FAILS
    assert control_verdict(None) == NO_CONTROL
