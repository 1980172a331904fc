"""The serving corpus: which pins the index holds."""

from __future__ import annotations

import numpy as np

from ebr.data.schema import CLICK, DataValidationError, Split


def training_window_corpus(split: Split) -> np.ndarray:
    """Sorted distinct ids of the pins engaged (click or repin) in the train window.

    Args:
        split: the time split; only `split.train` is read.

    Raises:
        DataValidationError: when split.train lacks the pin/event columns or has no engagements.
    """
    train = split.train
    missing = [c for c in ("pin", "event") if c not in train.columns]
    if missing:
        raise DataValidationError(f"split.train: missing column(s) {missing}")
    engaged = train["event"].to_numpy() >= CLICK
    corpus = np.unique(train["pin"].to_numpy()[engaged]).astype(np.int64, copy=False)
    if corpus.size == 0:
        raise DataValidationError(
            "split.train: no click/repin events, so the training-window corpus is empty"
        )
    return corpus
