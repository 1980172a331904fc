"""Relative deltas pooled over worlds: the world is a block, the training seed a replicate within it.

A sweep that varies the world (``data.config.seed``) as well as the training seed pairs arm and
baseline within (world, training seed). Per world, the delta and its paired t interval are those of
`ebr.report.stats` over that world's seed pairs. The pooled delta is the mean over worlds of the
world means (each world weighs the same). Its 95% interval is a two-level (hierarchical) percentile
bootstrap: each of `n_boot` draws picks as many worlds as there are, with replacement, then within
each drawn world as many seed pairs as it has, with replacement, and takes the mean over drawn
worlds of the drawn seeds' mean; the interval is the 2.5% and 97.5% quantiles of those draws
(numpy ``default_rng(seed)``, worlds drawn first for all draws, then seeds). It carries both the
world-to-world spread and the seed noise inside a world, which a t interval over all pooled pairs
would treat as one level (too narrow when worlds differ). With few worlds (3) the percentile
interval can only take few world combinations and tends to be narrower than it should; the t
interval over the world means (n_worlds - 1 degrees of freedom) is reported beside it as the
conservative check.

A world *agrees* when its delta has the pooled delta's sign and its own interval excludes 0.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ebr.report.pooled import PooledDelta, WorldDelta
from ebr.report.stats import LEVEL, t_interval

HIERARCHICAL_METHOD = (
    "Worlds (data.config.seed) are blocks: arm and baseline are paired within (world, training seed). "
    "Pooled Δ = mean over worlds of each world's mean relative delta. Its 95% CI is a hierarchical "
    "percentile bootstrap over {n_boot} draws (numpy seed {seed}): worlds resampled with replacement, "
    "then seed pairs within each drawn world with replacement. Each world's own Δ has its paired t "
    "interval; a world agrees when its Δ has the pooled sign and its interval excludes 0. The t "
    "interval over the world means (n_worlds - 1 df) is shown beside it as a conservative check."
)


def hierarchical_bootstrap(
    groups: list[np.ndarray], n_boot: int, seed: int, level: float = LEVEL
) -> tuple[float, float] | None:
    """Percentile interval of the mean of group means, resampling groups then members within a group.

    None with fewer than 2 groups, an empty group, or `n_boot` 0.

    Args:
        groups: one array of per-seed relative deltas per world.
        n_boot: number of draws.
        seed: numpy seed.
        level: confidence level.
    """
    n_groups = len(groups)
    if n_groups < 2 or n_boot <= 0 or any(len(g) == 0 for g in groups):
        return None
    sizes = np.array([len(g) for g in groups])
    widest = int(sizes.max())
    padded = np.zeros((n_groups, widest))
    for i, group in enumerate(groups):
        padded[i, : len(group)] = group
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, n_groups, size=(n_boot, n_groups))
    # a uniform draw scaled by the drawn world's size picks a member of that world uniformly
    uniform = rng.random((n_boot, n_groups, widest))
    counts = sizes[drawn]
    members = np.floor(uniform * counts[..., None]).astype(np.int64)
    valid = np.arange(widest) < counts[..., None]
    values = padded[drawn[..., None], members] * valid
    world_means = values.sum(axis=-1) / counts
    low, high = np.quantile(world_means.mean(axis=-1), [0.5 - level / 2, 0.5 + level / 2])
    return float(low), float(high)


def _excludes_zero(ci: tuple[float, float] | None) -> bool:
    return ci is not None and (ci[0] > 0 or ci[1] < 0)


def pooled_delta(
    per_pair: Mapping[str | None, float],
    world_of: Mapping[str, str],
    worlds: list[str],
    n_boot: int,
    seed: int,
) -> PooledDelta:
    """Per-world deltas and their pooled delta with its hierarchical interval.

    Args:
        per_pair: (world, seed) replicate key -> relative delta (`PairedDelta.per_seed`).
        world_of: replicate key -> its world.
        worlds: the sweep's worlds in order.
        n_boot: bootstrap draws.
        seed: bootstrap seed.
    """
    groups = {world: [] for world in worlds}
    for key, delta in per_pair.items():
        if key is not None and key in world_of:
            groups[world_of[key]].append(delta)
    arrays = [np.array(groups[w], dtype=np.float64) for w in worlds if groups[w]]
    means = [float(a.mean()) for a in arrays]
    mean = float(np.mean(means)) if means else None
    sign = 0 if mean is None else np.sign(mean)
    per_world = []
    for world in worlds:
        values = np.array(groups[world], dtype=np.float64)
        world_mean = float(values.mean()) if len(values) else None
        ci = t_interval(values)
        agrees = world_mean is not None and np.sign(world_mean) == sign != 0 and _excludes_zero(ci)
        per_world.append(WorldDelta(world, len(values), world_mean, ci, bool(agrees)))
    return PooledDelta(
        n_worlds=len(arrays),
        mean=mean,
        ci=hierarchical_bootstrap(arrays, n_boot, seed),
        world_t_ci=t_interval(np.array(means)),
        worlds=tuple(per_world),
    )
