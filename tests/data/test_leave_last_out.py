"""`split=leave_last_out`: a hand-built log cut by hand, no leakage on random logs, the refit split,
and the metrics its tables use (hr@K, ndcg@K, recall@K) against a hand computation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from test_splits import random_data

from ebr.config import register_schemas
from ebr.data.csr import Csr
from ebr.data.schema import (
    CLICK,
    IMPRESSION,
    NO_INTEREST,
    REPIN,
    CategoricalFeature,
    FeatureTable,
    InteractionData,
)
from ebr.data.splits import leave_last_out_split
from ebr.evaluation.metrics import retrieval_metrics
from ebr.retrieval.refit import check_refit_split

CONF = Path(__file__).resolve().parents[2] / "conf"

# (user, pin, timestamp, event)
LOG = [
    (0, 1, 10, CLICK),
    (0, 1, 10, REPIN),  # a repeat of pin 1: dropped
    (0, 2, 20, CLICK),
    (0, 0, 20, CLICK),  # the same second as pin 2: the lower pin id comes first
    (0, 3, 30, CLICK),
    (0, 4, 40, IMPRESSION),  # not an engagement
    (1, 3, 5, CLICK),  # two engaged pins: train only
    (1, 2, 6, CLICK),
    (2, 0, 1, CLICK),
    (2, 1, 2, CLICK),
    (2, 5, 3, CLICK),  # test pin nobody engaged in train: dropped as cold
    (3, 2, 1, CLICK),
    (3, 3, 2, CLICK),
    (3, 2, 3, CLICK),  # a repeat of pin 2, after pin 3: dropped, pin 2 stays first
    (3, 1, 4, CLICK),
]


def hand_data() -> InteractionData:
    events = pd.DataFrame(LOG, columns=["user", "pin", "timestamp", "event"])
    events["interest"] = NO_INTEREST
    events = events.astype({"user": np.int64, "pin": np.int64, "timestamp": np.int64, "event": np.int8})
    events = events.sort_values("timestamp", kind="stable").reset_index(drop=True)

    def table(n: int, name: str) -> FeatureTable:
        return FeatureTable(n, {name: CategoricalFeature.single(np.arange(n), n)})

    return InteractionData("hand", events, table(4, "user_id"), table(6, "pin_id"))


def rows(frame: pd.DataFrame) -> list[tuple[int, int, int]]:
    return sorted(map(tuple, frame[["user", "pin", "timestamp"]].to_numpy().tolist()))


def test_hand_built_log_is_cut_as_written() -> None:
    split = leave_last_out_split(hand_data())
    assert rows(split.train) == [(0, 0, 20), (0, 1, 10), (1, 2, 6), (1, 3, 5), (2, 0, 1), (3, 2, 1)]
    assert rows(split.val) == [(0, 2, 20), (2, 1, 2), (3, 3, 2)]
    assert rows(split.test) == [(0, 3, 30), (3, 1, 4)]
    assert split.cold == {
        "users_train_only": 1,
        "repeat_engagements": 2,
        "val_cold": 0,
        "val_users_no_warm": 0,
        "test_cold": 1,
        "test_users_no_warm": 1,
    }
    assert split.reference_time == 4
    assert split.pretrain.empty


def test_refit_merges_validation_and_keeps_the_test_pins() -> None:
    split = leave_last_out_split(hand_data())
    merged = leave_last_out_split(hand_data(), refit=True)
    assert rows(merged.train) == sorted(rows(split.train) + rows(split.val))
    assert merged.val.empty
    assert rows(merged.test) == rows(split.test)
    check_refit_split(split, merged)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_leakage_on_random_logs(seed: int) -> None:
    data = random_data(seed)
    split = leave_last_out_split(data)
    check_refit_split(split, leave_last_out_split(data, refit=True))
    for user in set(split.test["user"]) | set(split.val["user"]):
        train = split.train[split.train["user"] == user]
        val = split.val[split.val["user"] == user]
        test = split.test[split.test["user"] == user]
        assert len(val) <= 1
        assert len(test) <= 1
        # ordered by (timestamp, pin): every train pair before the validation one, that before test
        keys = [sorted(zip(f["timestamp"], f["pin"], strict=True)) for f in (train, val, test)]
        for earlier, later in ((keys[0], keys[1]), (keys[0], keys[2]), (keys[1], keys[2])):
            if earlier and later:
                assert earlier[-1] < later[0]
        # a validation or test pin is new to the user
        assert not set(test["pin"]) & (set(train["pin"]) | set(val["pin"]))
        assert not set(val["pin"]) & set(train["pin"])
    # each test user's test pin is their last distinct engaged pin, by a plain loop
    engaged = data.events[data.events["event"] >= CLICK]
    for user, frame in engaged.groupby("user"):
        first = frame.sort_values(["timestamp", "pin"]).drop_duplicates("pin")
        test = split.test[split.test["user"] == user]
        if len(first) < 3:
            assert user not in set(split.val["user"]) | set(test["user"])
        elif len(test):
            assert int(test["pin"].iloc[0]) == int(first["pin"].iloc[-1])


def test_metrics_against_a_hand_computation() -> None:
    # one test pin per user, as under leave-last-out: hr@K = recall@K
    retrieved = np.full((3, 50), -1, dtype=np.int64)
    retrieved[0, :3] = [3, 7, 8]  # relevant 7 at rank 2
    retrieved[1, :12] = np.arange(100, 112)  # relevant 111 at rank 12
    retrieved[2, :5] = [1, 2, 4, 5, 6]  # relevant 9 never retrieved
    relevant = Csr.from_pairs(np.array([0, 1, 2]), np.array([7, 111, 9]), 3)
    metrics = retrieval_metrics(retrieved, relevant, [10, 50])
    assert metrics["hr@10"] == pytest.approx(1 / 3)
    assert metrics["recall@10"] == metrics["hr@10"]
    assert metrics["ndcg@10"] == pytest.approx((1 / np.log2(3)) / 3)
    assert metrics["recall@50"] == pytest.approx(2 / 3)
    assert metrics["hr@50"] == metrics["recall@50"]
    assert metrics["ndcg@50"] == pytest.approx((1 / np.log2(3) + 1 / np.log2(13)) / 3)


def test_config_composes_the_split_and_its_metrics() -> None:
    register_schemas()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("train", overrides=["data=movielens", "data.path=x", "split=leave_last_out"])
    assert cfg.split._target_ == "ebr.data.splits.leave_last_out_split"
    assert {10, 50} <= set(cfg.eval.ks)  # hr@10, ndcg@10 and recall@50 are scored
    split = instantiate(cfg.split)(hand_data())
    assert rows(split.test) == [(0, 3, 30), (3, 1, 4)]
