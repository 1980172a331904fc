"""The data of a report over several worlds and of its paper claims: plain records, no computation.

They live apart from `ebr.report.document` (which holds them) and `ebr.report.hierarchy` /
`ebr.report.claims` (which compute them) so that neither import cycles through the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# the direction a paper claims: the arm above (+) or below (-) the baseline
DIRECTIONS = {"+": 1, "-": -1}


@dataclass(frozen=True)
class WorldDelta:
    """One world's relative delta of an arm against its baseline, paired by training seed.

    Args:
        world: the world's seed (``data.config.seed``) as text.
        n_pairs: training-seed pairs in that world.
        mean: mean of the world's per-seed relative deltas, None without pairs.
        t_ci: the world's paired t interval, None with fewer than 2 pairs.
        agrees: whether the world's delta has the pooled sign and its interval excludes 0.
    """

    world: str
    n_pairs: int
    mean: float | None
    t_ci: tuple[float, float] | None
    agrees: bool


@dataclass(frozen=True)
class PooledDelta:
    """An arm's relative delta pooled over worlds (`ebr.report.hierarchy`).

    Args:
        n_worlds: worlds with at least one seed pair.
        mean: mean over worlds of each world's mean relative delta.
        ci: hierarchical bootstrap percentile interval (worlds, then seeds within a world), None
            with fewer than 2 worlds.
        world_t_ci: t interval over the world means (n_worlds - 1 degrees of freedom), None with
            fewer than 2 worlds.
        worlds: each world's own delta, in world order.
    """

    n_worlds: int
    mean: float | None
    ci: tuple[float, float] | None
    world_t_ci: tuple[float, float] | None
    worlds: tuple[WorldDelta, ...]

    @property
    def n_agree(self) -> int:
        """How many worlds agree with the pooled delta (sign and interval excluding 0)."""
        return sum(world.agrees for world in self.worlds)


@dataclass(frozen=True)
class Delta:
    """An arm's seed-paired relative delta against the baseline (see `ebr.report.stats`).

    Args:
        n_pairs: seed pairs used.
        rel_mean: mean per-seed relative delta (0.01 is +1%), None without pairs.
        t_ci: paired t interval, None with fewer than 2 pairs.
        bootstrap_ci: paired bootstrap percentile interval, None with fewer than 2 pairs or none drawn.
        p_value: two-sided paired t test, None with fewer than 2 pairs or zero variance.
        per_seed: seed -> relative delta.
        excluded: seed -> why that seed is not paired.
        clipped: an interval's lower bound was clipped at -100% (a non-negative metric).
        pooled: over several worlds, the delta pooled over them; None for a one-world sweep.
    """

    n_pairs: int
    rel_mean: float | None
    t_ci: tuple[float, float] | None
    bootstrap_ci: tuple[float, float] | None
    p_value: float | None
    per_seed: dict[str, float]
    excluded: dict[str, str]
    clipped: bool = False
    pooled: PooledDelta | None = None


@dataclass(frozen=True)
class Claim:
    """A paper's claim as an experiment declares it (``report.claims``, `ebr.report.claims`).

    Args:
        arm: override key -> value naming the claim's arm.
        baseline: override key -> value naming what the arm is compared with.
        metric: the paper's metric as ebr measures it (e.g. ``sim/engaged_sessions``).
        direction: "+" (the arm is above the baseline) or "-".
        paper: the paper's reported delta, free text.
        offline: offline metrics that count toward a `partly` verdict when the paper's does not move.
        name: short name of the claim for tables (defaults to the arm's values).
    """

    arm: dict[str, Any]
    baseline: dict[str, Any]
    metric: str
    direction: str
    paper: str
    offline: tuple[str, ...] = ()
    name: str = ""

    @property
    def sign(self) -> int:
        """+1 or -1, the claimed direction."""
        return DIRECTIONS[self.direction]

    def to_json(self) -> dict[str, Any]:
        """The claim as plain JSON types."""
        return {
            "name": self.name,
            "arm": dict(self.arm),
            "baseline": dict(self.baseline),
            "metric": self.metric,
            "direction": self.direction,
            "paper": self.paper,
            "offline": list(self.offline),
        }


@dataclass(frozen=True)
class ClaimResult:
    """What a sweep measured for one claim: the arm against the claim's baseline.

    Args:
        claim: the claim.
        arm: the sweep's arm label matching `claim.arm`, None when no arm matches.
        baseline: the arm label matching `claim.baseline`, None when none matches.
        delta: the paired delta on the claim's metric (`ebr.report.document.Delta`), None when an
            arm is absent.
        offline: offline metric -> its paired delta for the same arm and baseline.
        problem: why there is no delta, None when there is one.
    """

    claim: Claim
    arm: str | None
    baseline: str | None
    delta: Any
    offline: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None


def interval_json(ci: tuple[float, float] | None) -> list[float] | None:
    """An interval as a JSON list, None stays None.

    Args:
        ci: (low, high) or None.
    """
    return None if ci is None else [ci[0], ci[1]]


def pooled_json(pooled: PooledDelta) -> dict[str, Any]:
    """``report.json``'s ``delta.pooled`` object.

    Args:
        pooled: the pooled delta.
    """
    return {
        "n_worlds": pooled.n_worlds,
        "mean": pooled.mean,
        "ci": interval_json(pooled.ci),
        "world_t_ci": interval_json(pooled.world_t_ci),
        "worlds": [
            {
                "world": w.world,
                "n_pairs": w.n_pairs,
                "mean": w.mean,
                "t_ci": interval_json(w.t_ci),
                "agrees": w.agrees,
            }
            for w in pooled.worlds
        ],
    }


def delta_json(delta: Delta) -> dict[str, Any]:
    """``report.json``'s ``delta`` object (``pooled`` only when the sweep has several worlds).

    Args:
        delta: the paired delta.
    """
    out = {
        "n_pairs": delta.n_pairs,
        "rel_mean": delta.rel_mean,
        "t_ci": interval_json(delta.t_ci),
        "bootstrap_ci": interval_json(delta.bootstrap_ci),
        "p_value": delta.p_value,
        "per_seed": dict(delta.per_seed),
        "excluded": dict(delta.excluded),
        "clipped": delta.clipped,
    }
    if delta.pooled is not None:
        out["pooled"] = pooled_json(delta.pooled)
    return out
