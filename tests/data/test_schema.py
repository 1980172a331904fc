"""The canonical schema: event validation and categorical features."""

import numpy as np
import pandas as pd
import pytest

from ebr.data.csr import Ragged
from ebr.data.schema import CategoricalFeature, DataValidationError, validate_events


def test_validate_events_names_file_column_and_row():
    frame = pd.DataFrame(
        {"user": [0, 1, 7], "pin": [0, 0, 0], "timestamp": [1, 2, 3], "event": [1, 1, 1], "interest": -1}
    )
    with pytest.raises(DataValidationError, match=r"events\.csv: column 'user' row 2: value 7"):
        validate_events(frame, n_users=5, n_pins=3, source="events.csv")
    with pytest.raises(DataValidationError, match=r"missing column\(s\) \['timestamp'\]"):
        validate_events(frame.drop(columns="timestamp"), 5, 3, "events.csv")
    bad_type = frame.assign(pin=["a", "0", "0"])
    with pytest.raises(DataValidationError, match=r"column 'pin' must hold integers.*first bad row 0"):
        validate_events(bad_type, 10, 3, "events.csv")


def test_a_categorical_feature_is_a_ragged_array_whose_bags_may_repeat_and_be_unsorted():
    feature = CategoricalFeature(np.array([0, 3, 3, 4]), np.array([5, 1, 5, 2]), 6, np.ones(4, np.float32))
    assert isinstance(feature, Ragged)
    assert feature.lengths().tolist() == [3, 0, 1]
    lengths, values, weights = feature.gather(np.array([2, 0, 2]))
    assert lengths.tolist() == [1, 3, 1]
    assert values.tolist() == [2, 5, 1, 5, 2]
    assert weights.tolist() == [1.0] * 5


def test_single_valued_feature_has_one_value_per_row():
    feature = CategoricalFeature.single(np.array([3, 0, 3]), 4)
    assert feature.offsets.tolist() == [0, 1, 2, 3]
    assert feature.offsets.dtype == np.int64
    assert feature.values.dtype == np.int64


@pytest.mark.parametrize(
    ("offsets", "values", "weights", "match"),
    [
        ([0, 2], [0, 4], None, r"values must be in \[0, 4\), got 0\.\.4"),
        ([0, 2], [-1, 1], None, r"values must be in \[0, 4\)"),
        ([0, 2], [0, 1], [1.0], "1 weights for 2 values"),
        ([0, 3], [0, 1], None, "end at len"),
        ([1, 2], [0, 1], None, "start at 0"),
    ],
)
def test_bad_categorical_feature_is_rejected(offsets, values, weights, match):
    with pytest.raises(ValueError, match=match):
        CategoricalFeature(
            np.array(offsets), np.array(values), 4, None if weights is None else np.array(weights, np.float32)
        )


def test_a_splits_train_engagements_are_computed_once_and_read_only():
    import dataclasses

    from ebr.data.schema import CLICK, IMPRESSION, Split

    train = pd.DataFrame({"user": [0, 1, 2], "pin": [5, 6, 7], "event": [CLICK, IMPRESSION, CLICK]})
    empty = train.iloc[:0]
    split = Split(pretrain=empty, train=train, val=empty, test=empty, reference_time=0)
    users, pins = split.train_engaged
    assert users.tolist() == [0, 2]
    assert pins.tolist() == [5, 7]
    assert split.train_engaged[0] is users, "computed once per split"
    with pytest.raises(ValueError, match="read-only"):
        pins[0] = 1
    # a split made from it (e.g. with remapped labels) computes its own
    moved = dataclasses.replace(split, train=train.assign(pin=[1, 2, 3]))
    assert moved.train_engaged[1].tolist() == [1, 3]
    with pytest.raises(DataValidationError, match=r"split\.train: missing column"):
        _ = dataclasses.replace(split, train=train.drop(columns="event")).train_engaged
