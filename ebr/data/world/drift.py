"""Interest drift: each user's interest mix moves over time, so the order of their actions matters.

At `interest_drift = d > 0` a user's weight on interest entry e at time t is

    w_ue(t) = (1 - d) * w_ue + d * [e == focus_u(day of t)]

where `w_ue` is the user's long-run (profile) weight and `focus_u` the interest the user is focused
on that day. A user's focus is drawn from their long-run weights on day 0 and redrawn (again from
those weights, possibly the same interest) on each later day with probability
`1 - exp(-1 / interest_drift_days)`, so a focus lasts `interest_drift_days` on average. The logging
policy draws its source interest from `w_u(t)` and the truth's interest-match term uses it, so recent
engagements reveal the current focus and old ones do not. At `d = 0` (the default) nothing is
drawn and the world is exactly the static one. The truth (`SyntheticTruth.current_entry_weights`)
looks the focus up, so the ideal ranker knows each user's current state.
"""

from __future__ import annotations

import numpy as np

from ebr.data.world.config import WorldConfig, stream
from ebr.data.world.entities import UserEntities


def no_focus(n_users: int) -> np.ndarray:
    """The focus table of a world without drift: (n_users, 0) int64.

    Args:
        n_users: number of users.
    """
    return np.zeros((n_users, 0), dtype=np.int64)


def draw_focus(config: WorldConfig, users: UserEntities) -> np.ndarray:
    """(n_users, n_days) int64: the interest entry (index into the users' interest lists) of each
    user's focus on each day; (n_users, 0) when `interest_drift` is 0.

    Args:
        config: the world (its `interest_drift`, `interest_drift_days`, `seed`, sizes).
        users: the users' interest lists and long-run weights.
    """
    if config.interest_drift == 0:
        return no_focus(config.n_users)
    rng = stream(config.seed, "interest_drift")
    n_users, n_days = config.n_users, config.n_days
    # fixed shapes, so the draws do not depend on the users' interest counts
    uniform = rng.random((n_users, n_days))
    switch = rng.random((n_users, n_days)) < -np.expm1(-1.0 / config.interest_drift_days)
    switch[:, 0] = True
    offsets = users.interest_offsets
    cumulative = np.concatenate([[0.0], np.cumsum(users.interest_weights, dtype=np.float64)])
    base, total = cumulative[offsets[:-1]], cumulative[offsets[1:]] - cumulative[offsets[:-1]]
    target = base[:, None] + uniform * total[:, None]
    entry = np.searchsorted(cumulative[1:], target, side="right")
    # rounding can push a draw past the user's last entry
    entry = np.clip(entry, offsets[:-1, None], offsets[1:, None] - 1)
    last_switch = np.maximum.accumulate(np.where(switch, np.arange(n_days), 0), axis=1)
    return np.take_along_axis(entry, last_switch, axis=1).astype(np.int64)


def drifted_weights(weights: np.ndarray, entries: np.ndarray, focus: np.ndarray, drift: float) -> np.ndarray:
    """`(1 - drift) * weights + drift * [entries == focus]`; 0 where an entry is -1 (no interest).

    Args:
        weights: long-run weights of the entries.
        entries: interest entries (-1: the user lacks the interest), the shape of `weights`.
        focus: the focused entry of each element's user at its time, broadcasting with `entries`.
        drift: the world's `interest_drift`.
    """
    drifted = (1.0 - drift) * weights + drift * (entries == focus)
    return np.where(entries >= 0, drifted, 0.0)
