"""Per-user temporal split (leave-the-latest-out): each user's last engagements are the test set.

The protocol used for real data sets such as MovieLens, where a single global cut time leaves
too few users with test engagements to compare models. For each user with at least
`min_engagements` engagements (clicks and repins), sorted by (timestamp, pin):

- the last `max(1, round_half_up(test_fraction * n))` go to test (at most n - 1);
- of the rest (the train part, n_tp rows), the last `max(1, round_half_up(val_fraction * n_tp))`
  go to validation (none when `val_fraction == 0`), always leaving at least one train row;
- the remaining earlier rows are `Split.train`, the only rows a model (or a baseline's
  hyperparameter search) is fitted on. `Split.train` excludes the validation slice.

Labels of val and test whose pin has no engagement in `Split.train` cannot be ranked (the
corpus is the pins with a train engagement), so they are dropped and counted in `Split.cold`.
Users with fewer engagements are left out entirely (counted too). There is no single serving
time: user A's test may precede user B's train. `reference_time` is the earliest test
timestamp, only a conventional value for time-dependent consumers (e.g. a time-decayed corpus).
"""

from __future__ import annotations

import numpy as np

from ebr.data.schema import InteractionData, Split


def per_user_temporal_split(
    data: InteractionData,
    min_engagements: int = 5,
    test_fraction: float = 0.2,
    val_fraction: float = 0.2,
) -> Split:
    """Split every eligible user's engagements into train / val / test by their own time order.

    Args:
        data: the data set (only its engagements are split; impressions are ignored).
        min_engagements: users with fewer engagements are dropped (at least 2).
        test_fraction: fraction of a user's engagements held out as test, in (0, 1).
        val_fraction: fraction of the remaining train part held out as validation, in [0, 1).

    Returns:
        A Split with `pretrain` empty, `train` / `val` / `test` engagement rows (events schema,
        sorted by user then (timestamp, pin)), `reference_time` the earliest test timestamp, and
        `cold` counts: `users_too_few` (users dropped for having 1 to `min_engagements` - 1 engagements),
        `test_cold`/`val_cold` (labels dropped because their pin has no train engagement) and
        `test_users_no_warm`/`val_users_no_warm` (eligible users left with no label in that window).

    Raises:
        ValueError: for bad parameters or when no user is eligible.
    """
    if min_engagements < 2:
        raise ValueError(f"split.min_engagements must be >= 2, got {min_engagements}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"split.test_fraction must be in (0, 1), got {test_fraction}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"split.val_fraction must be in [0, 1), got {val_fraction}")

    events = data.engagements()
    users = events["user"].to_numpy(np.int64)
    order = np.lexsort((events["pin"].to_numpy(), events["timestamp"].to_numpy(), users))
    events = events.iloc[order].reset_index(drop=True)
    users = users[order]

    # per-row user size and rank (0-based position in the user's time order)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if len(users) else np.zeros(0, int)
    sizes = np.diff(np.r_[starts, len(users)])
    n = np.repeat(sizes, sizes)
    rank = np.arange(len(users)) - np.repeat(starts, sizes)

    n_test = np.minimum(np.maximum(1, _round_half_up(test_fraction * n)), n - 1)
    train_part = n - n_test
    if val_fraction > 0:
        n_val = np.minimum(np.maximum(1, _round_half_up(val_fraction * train_part)), train_part - 1)
    else:
        n_val = np.zeros_like(n)
    eligible = n >= min_engagements
    is_test = eligible & (rank >= train_part)
    is_val = eligible & (rank >= train_part - n_val) & ~is_test
    is_train = eligible & ~is_test & ~is_val
    if not eligible.any():
        raise ValueError(
            f"{data.source}: no user has at least {min_engagements} engagements (split.min_engagements)"
        )

    train = events[is_train].reset_index(drop=True)
    warm_pins = np.zeros(data.pins.n_rows, dtype=bool)
    warm_pins[train["pin"].to_numpy()] = True
    eligible_users = users[starts[sizes >= min_engagements]]
    cold = {"users_too_few": int(np.sum(sizes < min_engagements))}
    windows = {}
    for name, mask in (("val", is_val), ("test", is_test)):
        window = events[mask]
        warm = warm_pins[window["pin"].to_numpy()]
        windows[name] = window[warm].reset_index(drop=True)
        cold[f"{name}_cold"] = int(np.sum(~warm))
        if name == "val" and val_fraction == 0:
            cold["val_users_no_warm"] = 0
            continue
        has_warm = np.isin(eligible_users, windows[name]["user"].to_numpy())
        cold[f"{name}_users_no_warm"] = int(np.sum(~has_warm))

    test = windows["test"]
    # the split's own timestamps, even when every test label turned out cold
    test_times = test["timestamp"] if len(test) else events.loc[is_test, "timestamp"]
    return Split(
        pretrain=events.iloc[:0].reset_index(drop=True),
        train=train,
        val=windows["val"],
        test=test,
        reference_time=int(test_times.min()),
        cold=cold,
    )


def _round_half_up(x: np.ndarray) -> np.ndarray:
    """Round to the nearest integer, halves up (numpy's round would send 2.5 to 2)."""
    # the epsilon keeps products such as 0.3 * 5 = 1.4999999999999998 on the intended side
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5 + 1e-9).astype(np.int64)
