"""Temporal splits of engagement events into pretrain / train / validation / test windows.

Three protocols, all Hydra targets of conf/split/*.yaml:

**Global** (`global_temporal_split`, the synthetic world's protocol). Windows are laid backwards
from the last event: test is the last `test_days`, validation the `val_days` before it, train the
`train_days` before that, pretrain everything earlier (or the `pretrain_days` before train). Labels
of a later window are strictly after every timestamp of an earlier one, so nothing learned from
train has seen the future.

**Per user** (`per_user_temporal_split`, leave-the-latest-out, the protocol of real data sets such as
MovieLens, where a single global cut time leaves too few users with test engagements to compare
models). For each user with at least `min_engagements` engagements (clicks and repins), sorted by
(timestamp, pin):

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

**Leave-last-out** (`leave_last_out_split`, the sequential recommendation protocol of SASRec and
HSTU): each user's last engaged pin is test, the one before it validation, the rest train; see its
docstring for repeats, ties and short users.

**Refit** (`refit=True`, any protocol): the split a model is refitted on once its
hyperparameters are chosen on the validation window. The same cut with the validation window
merged into train: `train` holds every row before test (for the per-user split, validation rows
whose pin has no engagement in the unmerged train included), `val` is empty, and `test` and the
cold counts refer to the merged window, so a test label on a pin first engaged in validation is
kept. `test` never precedes a merged-train row: per user for the per-user split, globally for the
global one.

Either split logs a warning when its training window holds under `MIN_TRAIN_SHARE` of the
engagements: a sign that the split does not suit the data (e.g. the global split's last weeks of
a decades-long log).
"""

from __future__ import annotations

import logging
from typing import Annotated

import numpy as np
import pandas as pd

from ebr.data.schema import SECONDS_PER_DAY, InteractionData, Split
from ebr.runs.checks import NON_NEGATIVE, POSITIVE, Integer, Number, refuse_problems

logger = logging.getLogger(__name__)

# A training window with a smaller share of the engagements than this is warned about.
MIN_TRAIN_SHARE = 0.1
# Users with fewer engaged pins keep them all in train under leave-last-out.
LEAVE_LAST_OUT_MIN = 3


def global_temporal_split(
    data: InteractionData,
    # whole days written as ints: the config (schema/split/global_temporal) shows them as written
    test_days: Annotated[float, POSITIVE] = 7,
    val_days: Annotated[float, NON_NEGATIVE] = 3,
    train_days: Annotated[float | None, Number(optional=True)] = 21,
    pretrain_days: Annotated[float | None, Number(low_inclusive=True, optional=True)] = None,
    refit: bool = False,
) -> Split:
    """Cut the data's engagements (clicks and repins) into consecutive time windows.

    Args:
        data: the data set.
        test_days: length of the test window, ending at the last event.
        val_days: length of the validation window just before test (0 for none).
        train_days: length of the training window just before validation; None takes
            everything before validation (and leaves pretrain empty).
        pretrain_days: length of the pretraining window just before train; None takes
            everything before train.
        refit: merge the validation window into train (train runs from the train window's start
            to the test window's; val is empty); the windows' bounds are the same as without it.

    Returns:
        A Split whose `reference_time` (serving time) is the start of the test window, whose
        `windows` are the four windows' (start, stop) bounds, and whose
        `cold` counts, for `val` and `test`: `<window>_cold` (engagements on a pin with no train
        engagement: the training-window corpus cannot rank them; they stay in the window),
        `<window>_users_no_warm` (window users with no engagement on such a warm pin),
        `<window>_users_unseen` and `<window>_pins_unseen` (distinct window users / pins with no
        train engagement).
    """
    refuse_problems(
        global_temporal_split,
        "split",
        test_days=test_days,
        val_days=val_days,
        train_days=train_days,
        pretrain_days=pretrain_days,
    )

    events = data.engagements()
    if events.empty:
        raise ValueError(f"{data.source}: no engagement events to split")
    first, pretrain_start, train_start, val_start, test_start, end = _global_bounds(
        data, test_days, val_days, train_days, pretrain_days
    )
    # with refit the validation window is part of training; every boundary stays where it was.
    # The bounds themselves, not the first and last timestamps, are kept: pre-training lays its
    # snapshot windows against them (ebr.pretraining)
    train_stop = test_start if refit else val_start
    bounds = {
        "pretrain": (pretrain_start, train_start),
        "train": (train_start, train_stop),
        "val": (train_stop, test_start),
        "test": (test_start, end),
    }
    timestamps = events["timestamp"].to_numpy()
    frames = {
        name: events[(timestamps >= start) & (timestamps < stop)].reset_index(drop=True)
        for name, (start, stop) in bounds.items()
    }
    if frames["test"].empty:
        raise ValueError(f"{data.source}: the test window ({test_days} days) holds no engagements")
    split = Split(
        **frames,
        reference_time=test_start,
        cold=_unseen_in_train(frames["train"], {"val": frames["val"], "test": frames["test"]}, data),
        windows=bounds,
    )
    span_days, window_days = (end - first) / SECONDS_PER_DAY, (train_stop - train_start) / SECONDS_PER_DAY
    what = f"global_temporal_split: a {window_days:.1f}-day training window of {span_days:.1f} days of data"
    _warn_if_train_window_small(split, len(events), data, what)
    return split


def _global_bounds(
    data: InteractionData,
    test_days: float,
    val_days: float,
    train_days: float | None,
    pretrain_days: float | None,
) -> tuple[int, int, int, int, int, int]:
    """The global split's bounds laid backwards from the last event: (first event, pretrain start,
    train start, validation start, test start, end); see `global_temporal_split`'s arguments.

    Raises:
        ValueError: when the training window is empty.
    """
    end = int(data.events["timestamp"].max()) + 1
    test_start = end - round(test_days * SECONDS_PER_DAY)
    val_start = test_start - round(val_days * SECONDS_PER_DAY)
    first = int(data.events["timestamp"].min())
    train_start = first if train_days is None else val_start - round(train_days * SECONDS_PER_DAY)
    pretrain_start = first if pretrain_days is None else train_start - round(pretrain_days * SECONDS_PER_DAY)
    if train_start >= val_start:
        raise ValueError(
            f"{data.source}: the training window is empty (data spans "
            f"{(end - first) / SECONDS_PER_DAY:.1f} days; test_days + val_days too large)"
        )
    return first, pretrain_start, train_start, val_start, test_start, end


def per_user_temporal_split(
    data: InteractionData,
    min_engagements: Annotated[int, Integer(2)] = 5,
    test_fraction: Annotated[float, Number(high=1.0)] = 0.2,
    val_fraction: Annotated[float, Number(low_inclusive=True, high=1.0)] = 0.2,
    refit: bool = False,
) -> Split:
    """Split every eligible user's engagements into train / val / test by their own time order.

    Args:
        data: the data set (only its engagements are split; impressions are ignored).
        min_engagements: users with fewer engagements are dropped (at least 2).
        test_fraction: fraction of a user's engagements held out as test, in (0, 1).
        val_fraction: fraction of the remaining train part held out as validation, in [0, 1).
        refit: keep the whole train part (train and validation rows) as `train` and leave `val`
            empty; test rows are the same as without it, and labels are dropped as cold only when
            their pin has no engagement in the whole train part. Equal to `val_fraction=0`.

    Returns:
        A Split with `pretrain` empty, `train` / `val` / `test` engagement rows (events schema,
        sorted by user then (timestamp, pin)), `reference_time` the earliest test timestamp, and
        `cold` counts: `users_too_few` (users dropped for having 1 to `min_engagements` - 1 engagements),
        `test_cold`/`val_cold` (labels dropped because their pin has no train engagement) and
        `test_users_no_warm`/`val_users_no_warm` (eligible users left with no label in that window).

    Raises:
        ValueError: for bad parameters or when no user is eligible.
    """
    refuse_problems(
        per_user_temporal_split,
        "split",
        min_engagements=min_engagements,
        test_fraction=test_fraction,
        val_fraction=val_fraction,
    )

    events = data.engagements()
    users = events["user"].to_numpy(np.int64)
    order = np.lexsort((events["pin"].to_numpy(), events["timestamp"].to_numpy(), users))
    events = events.iloc[order].reset_index(drop=True)
    users = users[order]

    starts, sizes, is_train, is_val, is_test = _per_user_masks(
        users, min_engagements, test_fraction, val_fraction if not refit else 0.0
    )
    if not (is_train | is_val | is_test).any():
        raise ValueError(
            f"{data.source}: no user has at least {min_engagements} engagements (split.min_engagements)"
        )

    eligible_users = users[starts[sizes >= min_engagements]]
    cold = {"users_too_few": int(np.sum(sizes < min_engagements))}
    has_val = val_fraction > 0 and not refit
    masks = (is_train, is_val, is_test)
    return _user_windows(data, events, masks, eligible_users, cold, has_val, "per_user_temporal_split")


def leave_last_out_split(data: InteractionData, refit: bool = False) -> Split:
    """Leave-last-out, the sequential recommendation protocol (SASRec, HSTU): per user, the last
    engaged pin is test, the one before it validation, the rest train.

    A user's engagements count once per pin, at the first (a later click or repin of the same pin
    is dropped, counted in `cold["repeat_engagements"]`), ordered by timestamp, ties by pin id: the
    cut is deterministic and no train pin comes after the validation pin, nor that after the test.
    Users with fewer than `LEAVE_LAST_OUT_MIN` (3) engaged pins are train only (counted in
    `cold["users_train_only"]`). As in `per_user_temporal_split`, a validation or test label whose pin
    has no engagement in `Split.train` is dropped (counted) and there is no single serving time
    (`reference_time` is the earliest test timestamp).

    Args:
        data: the data set (only its engagements are split).
        refit: merge each user's validation pin into train (val empty; the test pins are the same).

    Returns:
        A Split as `per_user_temporal_split`'s; `cold` holds `users_train_only`, `repeat_engagements`
        and the val / test `_cold` and `_users_no_warm` counts.
    """
    events = data.engagements()
    order = np.lexsort(
        (events["pin"].to_numpy(), events["timestamp"].to_numpy(), events["user"].to_numpy(np.int64))
    )
    events = events.iloc[order]
    first = ~events.duplicated(["user", "pin"], keep="first").to_numpy()
    events = events[first].reset_index(drop=True)
    users = events["user"].to_numpy(np.int64)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if len(users) else np.zeros(0, int)
    sizes = np.diff(np.r_[starts, len(users)])
    n, rank = np.repeat(sizes, sizes), np.arange(len(users)) - np.repeat(starts, sizes)
    eligible = n >= LEAVE_LAST_OUT_MIN
    is_test = eligible & (rank == n - 1)
    is_val = eligible & (rank == n - 2) & (not refit)
    if not is_test.any():
        raise ValueError(f"{data.source}: no user has {LEAVE_LAST_OUT_MIN} engaged pins (leave_last_out)")
    cold = {
        "users_train_only": int(np.sum(sizes < LEAVE_LAST_OUT_MIN)),
        "repeat_engagements": int(np.sum(~first)),
    }
    masks = (~is_test & ~is_val, is_val, is_test)
    eligible_users = users[starts[sizes >= LEAVE_LAST_OUT_MIN]]
    return _user_windows(data, events, masks, eligible_users, cold, not refit, "leave_last_out_split")


def _user_windows(
    data: InteractionData,
    events: pd.DataFrame,
    masks: tuple[np.ndarray, np.ndarray, np.ndarray],
    eligible_users: np.ndarray,
    cold: dict[str, int],
    has_val: bool,
    what: str,
) -> Split:
    """The per-user split from its row masks: cold val/test labels dropped and counted.

    Args:
        data: the data set.
        events: its engagements in the split's row order.
        masks: (train, validation, test) row masks.
        eligible_users: the users with validation and test rows.
        cold: the split's own counts, extended here.
        has_val: False when the split has no validation rows (refit, or no validation fraction).
        what: the split's name, for the small-training-window warning.
    """
    is_train, is_val, is_test = masks
    train = events[is_train].reset_index(drop=True)
    warm_pins = np.zeros(data.pins.n_rows, dtype=bool)
    warm_pins[train["pin"].to_numpy()] = True
    windows = {}
    for name, mask in (("val", is_val), ("test", is_test)):
        window = events[mask]
        warm = warm_pins[window["pin"].to_numpy()]
        windows[name] = window[warm].reset_index(drop=True)
        cold[f"{name}_cold"] = int(np.sum(~warm))
        if name == "val" and not has_val:
            cold["val_users_no_warm"] = 0
            continue
        has_warm = np.isin(eligible_users, windows[name]["user"].to_numpy())
        cold[f"{name}_users_no_warm"] = int(np.sum(~has_warm))

    test = windows["test"]
    # the split's own timestamps, even when every test label turned out cold
    test_times = test["timestamp"] if len(test) else events.loc[is_test, "timestamp"]
    split = Split(
        pretrain=events.iloc[:0].reset_index(drop=True),
        train=train,
        val=windows["val"],
        test=test,
        reference_time=int(test_times.min()),
        cold=cold,
    )
    _warn_if_train_window_small(split, len(events), data, what)
    return split


def _per_user_masks(
    users: np.ndarray, min_engagements: int, test_fraction: float, val_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each user's first row and row count, and which rows are train, validation and test.

    Args:
        users: the engagements' users, sorted by user and then by time.
        min_engagements: users with fewer rows are in no window.
        test_fraction: see `per_user_temporal_split`.
        val_fraction: see `per_user_temporal_split` (0: no validation rows, as under refit).
    """
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
    return starts, sizes, is_train, is_val, is_test


def _round_half_up(x: np.ndarray) -> np.ndarray:
    """Round to the nearest integer, halves up (numpy's round would send 2.5 to 2)."""
    # the epsilon keeps products such as 0.3 * 5 = 1.4999999999999998 on the intended side
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5 + 1e-9).astype(np.int64)


def _unseen_in_train(
    train: pd.DataFrame, windows: dict[str, pd.DataFrame], data: InteractionData
) -> dict[str, int]:
    """Cold counts of later windows against the training window (the keys of `global_temporal_split`).

    Args:
        train: the training window's engagements.
        windows: the later windows by name ("val", "test").
        data: the data set (table sizes).
    """
    warm_pins = np.zeros(data.pins.n_rows, dtype=bool)
    warm_pins[train["pin"].to_numpy()] = True
    seen_users = np.zeros(data.users.n_rows, dtype=bool)
    seen_users[train["user"].to_numpy()] = True
    cold = {}
    for name, frame in windows.items():
        users, pins = frame["user"].to_numpy(), frame["pin"].to_numpy()
        warm = warm_pins[pins]
        window_users = np.unique(users)
        cold[f"{name}_cold"] = int(np.sum(~warm))
        cold[f"{name}_users_no_warm"] = len(window_users) - len(np.unique(users[warm]))
        cold[f"{name}_users_unseen"] = int(np.sum(~seen_users[window_users]))
        cold[f"{name}_pins_unseen"] = int(np.sum(~warm_pins[np.unique(pins)]))
    return cold


def _warn_if_train_window_small(split: Split, n_engagements: int, data: InteractionData, detail: str) -> None:
    """Log a warning, with the numbers, when the training window holds under MIN_TRAIN_SHARE of the data.

    Args:
        split: the finished split.
        n_engagements: engagements of the whole data set.
        data: the data set (named in the message).
        detail: the split and what it knows about its windows, for the message.
    """
    share = len(split.train) / max(n_engagements, 1)
    if share < MIN_TRAIN_SHARE:
        logger.warning(
            "%s: the training window holds %d of %d engagements (%.1f%%, under %.0f%%; %s): is this the"
            " split this data set is meant for?",
            data.source,
            len(split.train),
            n_engagements,
            100 * share,
            100 * MIN_TRAIN_SHARE,
            detail,
        )
