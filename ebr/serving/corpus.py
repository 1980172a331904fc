"""The serving corpus: which pins the index holds."""

from __future__ import annotations

import numpy as np

from ebr.data.schema import DataValidationError, Split, engaged_pairs


def training_window_corpus(split: Split) -> np.ndarray:
    """Sorted distinct ids of the pins engaged (click or repin) in the train window.

    Args:
        split: the time split; only `split.train` is read.

    Raises:
        DataValidationError: when split.train lacks the user/pin/event columns or has no engagements.
    """
    _, pins = engaged_pairs(split.train, "split.train")
    corpus = np.unique(pins)
    if corpus.size == 0:
        raise DataValidationError(
            "split.train: no click/repin events, so the training-window corpus is empty"
        )
    return corpus
