"""Temporal splits of engagement events into pretrain / train / validation / test windows.

Windows are laid backwards from the last event: test is the last `test_days`, validation
the `val_days` before it, train the `train_days` before that, pretrain everything earlier
(or the `pretrain_days` before train). Labels of a later window are strictly after every
timestamp of an earlier one, so nothing learned from train has seen the future.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ebr.data.schema import SECONDS_PER_DAY, InteractionData, Split


def global_temporal_split(
    data: InteractionData,
    test_days: float = 7.0,
    val_days: float = 3.0,
    train_days: float | None = 21.0,
    pretrain_days: float | None = None,
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

    Returns:
        A Split whose `reference_time` (serving time) is the start of the test window.
    """
    for name, value in (("test_days", test_days), ("val_days", val_days)):
        if value < 0:
            raise ValueError(f"split.{name} must be >= 0, got {value}")
    if test_days <= 0:
        raise ValueError(f"split.test_days must be > 0, got {test_days}")
    if train_days is not None and train_days <= 0:
        raise ValueError(f"split.train_days must be > 0 or null, got {train_days}")
    if pretrain_days is not None and pretrain_days < 0:
        raise ValueError(f"split.pretrain_days must be >= 0 or null, got {pretrain_days}")

    events = data.engagements()
    if events.empty:
        raise ValueError(f"{data.source}: no engagement events to split")
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
    timestamps = events["timestamp"].to_numpy()

    def window(start: int, stop: int) -> pd.DataFrame:
        mask = (timestamps >= start) & (timestamps < stop)
        return events[mask].reset_index(drop=True)

    split = Split(
        pretrain=window(pretrain_start, train_start),
        train=window(train_start, val_start),
        val=window(val_start, test_start),
        test=window(test_start, end),
        reference_time=test_start,
    )
    if split.test.empty:
        raise ValueError(f"{data.source}: the test window ({test_days} days) holds no engagements")
    return split


def window_bounds(split: Split) -> dict[str, tuple[int, int]]:
    """(first, last) timestamp of each non-empty window, for logs and leakage checks."""
    bounds = {}
    for name in ("pretrain", "train", "val", "test"):
        frame: pd.DataFrame = getattr(split, name)
        if len(frame):
            ts = frame["timestamp"].to_numpy()
            bounds[name] = (int(np.min(ts)), int(np.max(ts)))
    return bounds
