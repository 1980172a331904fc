"""The refit protocol (`eval.refit`): which windows a job fits on, tunes on and scores.

Without refit a job fits on `Split.train`, tuning baselines choose on `Split.train` ->
`Split.val`, and the task's corpus and exclusions come from `Split.train`.

With refit (only with `eval.window=test`) the job's split becomes the same cut with validation
merged into train (the split function called with `refit=True`): the model is fitted on
train+val, the serving corpus is the pins engaged in train+val, and the test task's exclusions
and repeat filtering use each user's train+val engagements (their validation engagements are
history by test time). Tuning baselines still choose on the unmerged cut's train -> val
(`FitContext.tuning`), then refit the chosen value on train+val; the two-tower model has no
tuning inside a job (its hyperparameters are config, chosen beforehand with `eval.window=val`).

With `eval.window=val` refit is ignored, with a warning: scoring validation after training on it
would score the training data. So `experiment=movielens eval.window=val`, the tuning command,
needs no extra override; the job records `eval/refit` = 0.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ebr.data.schema import CLICK, DataValidationError, InteractionData, Split, engaged_pairs
from ebr.retrieval.protocol import TuningWindow
from ebr.serving.corpus import training_window_corpus

log = logging.getLogger(__name__)

# what identifies a row when checking that the merged windows hold the unmerged ones
KEY = ["user", "pin", "timestamp"]


@dataclass(frozen=True)
class FitWindows:
    """The split a job fits and scores on, and where its baselines tune.

    Args:
        split: the fitted split (train+val as `train` under refit, else the cut itself).
        tuning: under refit, the unmerged cut and its train corpus; None otherwise.
        tuned_on: the unmerged cut (the same object as `split` without refit).
    """

    split: Split
    tuning: TuningWindow | None
    tuned_on: Split

    @property
    def refit(self) -> bool:
        return self.tuning is not None

    def metrics(self) -> dict[str, float]:
        """`eval/refit` (1.0 or 0.0); under refit also the unmerged cut's train and val sizes and
        its cold counts but test's as `data/tuning_<key>` (e.g. `data/tuning_val_engagements`),
        since the job's `data/<key>` then describe the merged split, train+val -> test."""
        metrics = {"eval/refit": float(self.refit)}
        if self.refit:
            for name in ("train", "val"):
                metrics[f"data/tuning_{name}_engagements"] = float(len(getattr(self.tuned_on, name)))
            cold = self.tuned_on.cold.items()
            # the unmerged cut's test counts are not the job's: its test labels are the merged split's
            metrics.update({f"data/tuning_{key}": float(v) for key, v in cold if not key.startswith("test_")})
        return metrics


def fit_windows(
    make_split: Callable[..., Split], data: InteractionData, split: Split, window: str, refit: object
) -> FitWindows:
    """The windows of one job under `eval.refit` (see the module docstring).

    Args:
        make_split: the job's split function (the instantiated `split` config), called again
            with `refit=True` for the merged split.
        data: the data set.
        split: `make_split(data)`, the cut hyperparameters are tuned on.
        window: `eval.window` ("test" or "val").
        refit: `eval.refit`.

    Raises:
        ValueError: when `eval.refit` is not a bool, or the merged split breaks the refit
            contract (see `check_refit_split`).
    """
    if not isinstance(refit, bool):
        raise ValueError(f"eval.refit must be true or false, got {refit!r}")
    if not refit:
        return FitWindows(split, None, split)
    if window != "test":
        log.warning(
            "eval.refit=true is ignored with eval.window=%s: the model is fitted on train only and "
            "scored on validation (eval/refit = 0)",
            window,
        )
        return FitWindows(split, None, split)
    merged = make_split(data, refit=True)
    check_refit_split(split, merged)
    return FitWindows(merged, TuningWindow(split, training_window_corpus(split)), split)


def check_refit_split(split: Split, merged: Split) -> None:
    """Fail unless `merged` is `split` with validation merged into train, strictly before test.

    `merged.val` must be empty, `merged.train` must hold every row of `split.train` and
    `split.val`, `merged.test` every row of `split.test`, and no user may have a test
    engagement earlier than one of their train+val engagements.

    Args:
        split: the cut as tuned on.
        merged: the same split function's `refit=True` result.
    """
    problems = []
    if len(merged.val):
        problems.append(f"val holds {len(merged.val)} rows (must be empty)")
    if not _holds(merged.train, pd.concat([split.train, split.val])):
        problems.append("train lacks rows of the unmerged train or val")
    if not _holds(merged.test, split.test):
        problems.append("test lacks rows of the unmerged test")
    early = early_test_users(merged)
    if len(early):
        problems.append(
            f"{len(early)} users have a test engagement before a train+val one (e.g. user {early[0]})"
        )
    if problems:
        raise ValueError(
            "eval.refit: the split function's refit=True split is not train+val -> test: "
            + "; ".join(problems)
        )


def early_test_users(split: Split) -> np.ndarray:
    """Sorted users with a `split.test` engagement earlier than one of their `split.train` ones.

    Args:
        split: the split (its `train` and `test` need user, event and timestamp columns).
    """
    last_train = _engagement_times(split.train, "split.train").groupby(level=0).max()
    first_test = _engagement_times(split.test, "split.test").groupby(level=0).min()
    both = last_train.index.intersection(first_test.index)
    early = first_test[both].to_numpy() < last_train[both].to_numpy()
    return np.sort(np.asarray(both[early], dtype=np.int64))


def _engagement_times(frame: pd.DataFrame, name: str) -> pd.Series:
    """Timestamps of the frame's engagements (clicks and repins), indexed by user."""
    users, _ = engaged_pairs(frame, name)  # validates the columns, naming the frame
    if "timestamp" not in frame.columns:
        raise DataValidationError(f"{name}: missing column 'timestamp'")
    engaged = frame["event"].to_numpy() >= CLICK
    return pd.Series(frame["timestamp"].to_numpy()[engaged], index=users)


def _holds(outer: pd.DataFrame, inner: pd.DataFrame) -> bool:
    """Whether every (user, pin, timestamp) row of `inner` is a row of `outer` (with multiplicity)."""
    if len(inner) == 0:
        return True
    count = outer.groupby(KEY).size()
    need = inner.groupby(KEY).size()
    have = count.reindex(need.index, fill_value=0)
    return bool((have >= need).all())
