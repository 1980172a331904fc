"""The refit split (`refit=True`): train+val -> test, against the unmerged split and plain loops."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_movielens import real_data_folder
from test_splits import as_rows, brute_force, random_data

from ebr.data.loaders.movielens import load_movielens
from ebr.data.schema import CLICK, SECONDS_PER_DAY, InteractionData, Split
from ebr.data.splits import global_temporal_split, per_user_temporal_split
from ebr.retrieval.refit import check_refit_split, early_test_users


def last_train_before_first_test(split: Split) -> bool:
    """Per user, every train+val timestamp <= every test timestamp (a plain loop over users)."""
    for user in set(split.test["user"]):
        train = split.train.loc[split.train["user"] == user, "timestamp"]
        test = split.test.loc[split.test["user"] == user, "timestamp"]
        if len(train) and test.min() < train.max():
            return False
    return True


@pytest.mark.parametrize(
    ("seed", "min_eng", "test_fraction", "val_fraction"),
    [(0, 5, 0.2, 0.2), (1, 3, 0.3, 0.25), (3, 2, 0.9, 0.5)],
)
def test_per_user_refit_is_train_plus_val(
    seed: int, min_eng: int, test_fraction: float, val_fraction: float
) -> None:
    data = random_data(seed)
    split = per_user_temporal_split(data, min_eng, test_fraction, val_fraction)
    merged = per_user_temporal_split(data, min_eng, test_fraction, val_fraction, refit=True)
    # the whole train part of every user: the protocol with no validation slice, written out
    want = brute_force(data, min_eng, test_fraction, 0.0)
    assert as_rows(merged.train) == sorted(want["train"])
    assert as_rows(merged.test) == sorted(want["test"])
    assert merged.val.empty
    # exactly train + val + the validation rows dropped as cold from the unmerged split
    assert set(as_rows(split.train)) | set(as_rows(split.val)) <= set(as_rows(merged.train))
    assert len(merged.train) == len(split.train) + len(split.val) + split.cold["val_cold"]
    # test rows are the same cut; labels come back when their pin was first engaged in validation
    assert set(as_rows(split.test)) <= set(as_rows(merged.test))
    assert len(merged.test) == len(split.test) + split.cold["test_cold"] - merged.cold["test_cold"]
    assert set(merged.test["pin"]) <= set(merged.train["pin"])
    assert merged.cold == {
        "users_too_few": want["too_few"],
        "val_cold": 0,
        "val_users_no_warm": 0,
        "test_cold": want["test_cold"],
        "test_users_no_warm": want["test_users_no_warm"],
    }
    assert last_train_before_first_test(merged)
    assert len(early_test_users(merged)) == 0
    check_refit_split(split, merged)


def test_per_user_refit_gives_back_labels_first_engaged_in_validation() -> None:
    # user 0 meets pin 9 only in validation; user 1 has pin 9 in test
    rows = [(0, p, t) for p, t in [(1, 0), (2, 1), (3, 2), (9, 3), (4, 4)]]
    rows += [(1, p, t) for p, t in [(1, 0), (2, 1), (3, 2), (5, 3), (9, 9)]]
    events = pd.DataFrame(rows, columns=["user", "pin", "timestamp"])
    events["event"] = np.int8(CLICK)
    events["interest"] = np.int32(-1)
    data = random_data(0)
    data = InteractionData("hand", events, data.users, data.pins)
    split = per_user_temporal_split(data, 5, 0.2, 0.25)
    merged = per_user_temporal_split(data, 5, 0.2, 0.25, refit=True)
    # (user, timestamp, pin) rows: each user has 1 test, 1 validation and 3 train engagements
    assert 9 not in set(split.train["pin"])
    assert (0, 3, 9) not in set(as_rows(split.val))  # dropped as cold without refit
    assert split.cold["val_cold"] == 2
    assert split.cold["test_cold"] == 2
    assert (1, 9, 9) not in set(as_rows(split.test))  # cold without refit
    assert (1, 9, 9) in set(as_rows(merged.test))  # warm once validation is training
    assert (0, 3, 9) in set(as_rows(merged.train))
    assert (0, 4, 4) not in set(as_rows(merged.test))  # pin 4 is still never engaged before test
    assert merged.cold["test_cold"] == 1


@pytest.mark.parametrize("seed", [0, 1])
def test_global_refit_merges_the_validation_window(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 400
    events = pd.DataFrame(
        {
            "user": rng.integers(0, 20, n),
            "pin": rng.integers(0, 60, n),
            "timestamp": rng.integers(0, 40 * SECONDS_PER_DAY, n),
            "event": rng.choice([0, CLICK, 2], n).astype(np.int8),
            "interest": np.full(n, -1, dtype=np.int32),
        }
    )
    base = random_data(0)
    data = InteractionData("global", events, base.users, base.pins)
    split = global_temporal_split(data, test_days=7, val_days=5, train_days=20)
    merged = global_temporal_split(data, test_days=7, val_days=5, train_days=20, refit=True)
    assert as_rows(merged.train) == sorted(as_rows(split.train) + as_rows(split.val))
    assert merged.val.empty
    assert as_rows(merged.test) == as_rows(split.test)
    assert as_rows(merged.pretrain) == as_rows(split.pretrain)
    assert merged.reference_time == split.reference_time
    warm = set(merged.train["pin"])
    assert merged.cold["test_cold"] == sum(p not in warm for p in merged.test["pin"])
    assert merged.cold["val_cold"] == 0
    assert merged.train["timestamp"].max() < merged.test["timestamp"].min()
    check_refit_split(split, merged)


def test_check_refit_split_names_what_is_wrong() -> None:
    data = random_data(0)
    split = per_user_temporal_split(data)
    merged = per_user_temporal_split(data, refit=True)
    with pytest.raises(ValueError, match=r"eval\.refit.*val holds \d+ rows"):
        check_refit_split(split, Split(merged.pretrain, merged.train, split.val, merged.test, 0))
    with pytest.raises(ValueError, match="train lacks rows"):
        check_refit_split(split, Split(split.pretrain, split.train, split.val.iloc[:0], merged.test, 0))
    # a test row moved before the user's train+val rows
    test = merged.test.copy()
    test.loc[test.index[0], "timestamp"] = -1
    with pytest.raises(ValueError, match=rf"1 users have a test engagement.*user {test['user'].iloc[0]}"):
        check_refit_split(split, Split(merged.pretrain, merged.train, merged.val, test, 0))
    assert list(early_test_users(Split(merged.pretrain, merged.train, merged.val, test, 0))) == [
        test["user"].iloc[0]
    ]


def test_real_ml_latest_small_refit_is_strictly_before_test_per_user() -> None:
    data = load_movielens(real_data_folder())
    split = per_user_temporal_split(data)
    merged = per_user_temporal_split(data, refit=True)
    check_refit_split(split, merged)
    # an independent check: per user, the latest train+val timestamp against the earliest test one
    last = merged.train.groupby("user")["timestamp"].max()
    first = merged.test.groupby("user")["timestamp"].min()
    assert (first >= last.reindex(first.index)).all()
    assert len(merged.train) == 31_082 + 6_999 + 777
    assert merged.val.empty
    assert len(merged.test) > len(split.test)
