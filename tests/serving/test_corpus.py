"""The serving corpus: the pins engaged in the training window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ebr.data.schema import CLICK, IMPRESSION, REPIN, DataValidationError, Split
from ebr.serving.corpus import training_window_corpus


def _events(rows: list[tuple[int, int, int, int]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["user", "pin", "timestamp", "event"])
    frame["interest"] = -1
    return frame


def test_training_window_corpus_keeps_engaged_train_pins() -> None:
    train = _events([(0, 9, 1, CLICK), (1, 3, 2, REPIN), (2, 5, 3, IMPRESSION), (0, 3, 4, CLICK)])
    later = _events([(0, 11, 10, CLICK)])
    split = Split(pretrain=later, train=train, val=later, test=later, reference_time=10)
    corpus = training_window_corpus(split)
    assert corpus.tolist() == [3, 9]
    assert corpus.dtype == np.int64
    empty = Split(later, _events([(0, 1, 1, IMPRESSION)]), later, later, 10)
    with pytest.raises(DataValidationError, match=r"split\.train"):
        training_window_corpus(empty)
