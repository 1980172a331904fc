"""Both temporal splits: windows, leakage and cold counts against plain per-row loops on random data."""

from __future__ import annotations

import logging
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate

from ebr.data.schema import (
    CLICK,
    IMPRESSION,
    NO_INTEREST,
    REPIN,
    SECONDS_PER_DAY,
    CategoricalFeature,
    FeatureTable,
    InteractionData,
    validate_events,
)
from ebr.data.splits import MIN_TRAIN_SHARE, global_temporal_split, per_user_temporal_split

REPO = Path(__file__).resolve().parents[2]


def random_data(seed: int, n_users: int = 40, n_pins: int = 300, n_events: int = 600) -> InteractionData:
    rng = np.random.default_rng(seed)
    events = pd.DataFrame(
        {
            # skewed users so some fall under min_engagements; few timestamps so ties are common
            "user": rng.zipf(1.6, n_events) % n_users,
            "pin": rng.integers(0, n_pins, n_events),
            "timestamp": rng.integers(0, 50, n_events),
            "event": rng.choice([IMPRESSION, CLICK, REPIN], n_events),
            "interest": np.full(n_events, NO_INTEREST),
        }
    )

    def table(n: int, name: str) -> FeatureTable:
        return FeatureTable(n, {name: CategoricalFeature.single(np.arange(n), n)})

    return InteractionData("random", events, table(n_users, "user_id"), table(n_pins, "pin_id"))


def half_up(x: Decimal) -> int:
    return int(x.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def brute_force(data: InteractionData, min_eng: int, test_fraction: float, val_fraction: float) -> dict:
    """The protocol written out user by user with Python lists and exact decimal rounding."""
    by_user: dict[int, list[tuple[int, int]]] = {}
    for user, pin, ts, event in data.events[["user", "pin", "timestamp", "event"]].itertuples(index=False):
        if event >= CLICK:
            by_user.setdefault(int(user), []).append((int(ts), int(pin)))
    train, val, test = [], [], []
    too_few = 0
    for user, rows in by_user.items():
        n = len(rows)
        if n < min_eng:
            too_few += 1
            continue
        rows = sorted(rows)  # by (timestamp, pin)
        n_test = min(max(1, half_up(Decimal(str(test_fraction)) * n)), n - 1)
        rest = n - n_test
        n_val = 0 if val_fraction == 0 else min(max(1, half_up(Decimal(str(val_fraction)) * rest)), rest - 1)
        train += [(user, ts, pin) for ts, pin in rows[: rest - n_val]]
        val += [(user, ts, pin) for ts, pin in rows[rest - n_val : rest]]
        test += [(user, ts, pin) for ts, pin in rows[rest:]]
    warm = {pin for _, _, pin in train}
    eligible = {u for u, rows in by_user.items() if len(rows) >= min_eng}
    result = {"train": train, "too_few": too_few}
    for name, rows in (("val", val), ("test", test)):
        kept = [r for r in rows if r[2] in warm]
        result[name] = kept
        result[f"{name}_cold"] = len(rows) - len(kept)
        result[f"{name}_users_no_warm"] = len(eligible - {u for u, _, _ in kept})
    return result


def as_rows(frame: pd.DataFrame) -> list[tuple[int, int, int]]:
    return sorted(map(tuple, frame[["user", "timestamp", "pin"]].to_numpy().tolist()))


@pytest.mark.parametrize(
    ("seed", "min_eng", "test_fraction", "val_fraction"),
    [(0, 5, 0.2, 0.2), (1, 3, 0.3, 0.25), (2, 5, 0.5, 0.0), (3, 2, 0.9, 0.5)],
)
def test_matches_brute_force(seed: int, min_eng: int, test_fraction: float, val_fraction: float) -> None:
    data = random_data(seed)
    split = per_user_temporal_split(data, min_eng, test_fraction, val_fraction)
    want = brute_force(data, min_eng, test_fraction, val_fraction)
    assert as_rows(split.train) == sorted(want["train"])
    assert as_rows(split.val) == sorted(want["val"])
    assert as_rows(split.test) == sorted(want["test"])
    assert split.pretrain.empty
    assert split.cold == {
        "users_too_few": want["too_few"],
        "val_cold": want["val_cold"],
        "val_users_no_warm": want["val_users_no_warm"] if val_fraction else 0,
        "test_cold": want["test_cold"],
        "test_users_no_warm": want["test_users_no_warm"],
    }
    assert split.reference_time == min(ts for _, ts, _ in want["test"])
    # every label pin of val / test has a train engagement
    assert set(split.test["pin"]) <= set(split.train["pin"])
    assert set(split.val["pin"]) <= set(split.train["pin"])
    assert (split.train["event"] >= CLICK).all()


def test_ordering_uses_pin_to_break_timestamp_ties() -> None:
    # one user, 5 engagements at the same time: the test item is the highest pin id
    events = pd.DataFrame(
        {
            "user": [0] * 5,
            "pin": [4, 0, 3, 1, 2],
            "timestamp": [7] * 5,
            "event": [CLICK] * 5,
            "interest": [-1] * 5,
        }
    )
    table = FeatureTable(5, {"pin_id": CategoricalFeature.single(np.arange(5), 5)})
    data = InteractionData("ties", events, FeatureTable(1), table)
    split = per_user_temporal_split(data, min_engagements=5)
    assert split.cold["test_cold"] == 1  # pin 4 only in test, so it is cold
    assert split.test.empty
    assert split.val["pin"].tolist() == []  # pin 3 is val, also cold
    assert split.cold["val_cold"] == 1
    assert sorted(split.train["pin"]) == [0, 1, 2]


def test_bad_parameters_and_no_eligible_user() -> None:
    data = random_data(0)
    with pytest.raises(ValueError, match="test_fraction"):
        per_user_temporal_split(data, test_fraction=1.0)
    with pytest.raises(ValueError, match="min_engagements"):
        per_user_temporal_split(data, min_engagements=1)
    with pytest.raises(ValueError, match="no user has at least 10000"):
        per_user_temporal_split(data, min_engagements=10_000)


def test_hydra_config_is_partial() -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from ebr.config import register_schemas

    # the preset starts from the function's schema (schema/split/per_user_temporal): compose it
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["split=per_user_temporal"]).split
    GlobalHydra.instance().clear()
    split_fn = instantiate(cfg)
    data = random_data(4)
    expected = per_user_temporal_split(data, 5, 0.2, 0.2)
    assert as_rows(split_fn(data).test) == as_rows(expected.test)


def _tables(n_users: int, n_pins: int) -> tuple[FeatureTable, FeatureTable]:
    return (
        FeatureTable(n_users, {"user_id": CategoricalFeature.single(np.arange(n_users), n_users)}),
        FeatureTable(n_pins, {"pin_id": CategoricalFeature.single(np.arange(n_pins), n_pins)}),
    )


def timed_data(
    seed: int, days: float = 40, n: int = 5000, n_users: int = 20, n_pins: int = 30
) -> InteractionData:
    """Random events spread uniformly over `days`, with every event type."""
    rng = np.random.default_rng(seed)
    events = pd.DataFrame(
        {
            "user": rng.integers(0, n_users, n),
            "pin": rng.integers(0, n_pins, n),
            "timestamp": np.sort(rng.integers(0, round(days * SECONDS_PER_DAY), n)),
            "event": rng.choice([IMPRESSION, CLICK, REPIN], n),
            "interest": NO_INTEREST,
        }
    )
    users, pins = _tables(n_users, n_pins)
    return InteractionData("t", validate_events(events, n_users, n_pins, "t"), users, pins, source="log.csv")


def test_global_split_windows_are_ordered_and_disjoint():
    data = timed_data(4)
    split = global_temporal_split(data, test_days=5, val_days=3, train_days=10, pretrain_days=None)
    assert split.train["timestamp"].max() < split.val["timestamp"].min()
    assert split.val["timestamp"].max() < split.test["timestamp"].min()
    assert split.pretrain["timestamp"].max() < split.train["timestamp"].min()
    assert split.test["timestamp"].min() >= split.reference_time > split.val["timestamp"].max()
    for window in (split.pretrain, split.train, split.val, split.test):
        assert (window["event"] >= CLICK).all()  # only engagements are labels
    total = sum(len(w) for w in (split.pretrain, split.train, split.val, split.test))
    assert total == int((data.events["event"] >= CLICK).sum())
    end = data.events["timestamp"].max() + 1
    assert split.reference_time == end - 5 * SECONDS_PER_DAY
    # the train window is exactly 10 days long
    train_start = split.reference_time - 13 * SECONDS_PER_DAY
    assert split.train["timestamp"].min() >= train_start
    assert split.pretrain["timestamp"].max() < train_start


def test_global_split_records_each_windows_bounds():
    data = timed_data(4)
    split = global_temporal_split(data, test_days=5, val_days=3, train_days=10, pretrain_days=12)
    end = int(data.events["timestamp"].max()) + 1
    day = SECONDS_PER_DAY
    assert split.windows == {
        "pretrain": (end - 30 * day, end - 18 * day),
        "train": (end - 18 * day, end - 8 * day),
        "val": (end - 8 * day, end - 5 * day),
        "test": (end - 5 * day, end),
    }
    for name, (start, stop) in split.windows.items():
        frame = getattr(split, name)
        assert frame["timestamp"].min() >= start
        assert frame["timestamp"].max() < stop
    assert per_user_temporal_split(data).windows == {}, "the per-user split has no global windows"


def test_global_split_rejects_impossible_windows():
    data = timed_data(5, days=10)
    with pytest.raises(ValueError, match="training window is empty"):
        global_temporal_split(data, test_days=5, val_days=6, train_days=None)
    with pytest.raises(ValueError, match="test_days"):
        global_temporal_split(data, test_days=0)


def global_cold_brute_force(data: InteractionData, split) -> dict[str, int]:
    """The global split's cold counts written out with Python sets over the windows' rows."""
    train = list(split.train[["user", "pin"]].itertuples(index=False))
    warm_pins = {pin for _, pin in train}
    seen_users = {user for user, _ in train}
    cold = {}
    for name in ("val", "test"):
        rows = list(getattr(split, name)[["user", "pin"]].itertuples(index=False))
        users = {user for user, _ in rows}
        cold[f"{name}_cold"] = sum(pin not in warm_pins for _, pin in rows)
        cold[f"{name}_users_no_warm"] = len(users - {user for user, pin in rows if pin in warm_pins})
        cold[f"{name}_users_unseen"] = len(users - seen_users)
        cold[f"{name}_pins_unseen"] = len({pin for _, pin in rows} - warm_pins)
    return cold


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_global_split_counts_what_the_training_window_never_saw(seed):
    # many users and pins for few events, so that later windows hold unseen users and pins
    data = timed_data(seed, days=30, n=1500, n_users=300, n_pins=400)
    split = global_temporal_split(data, test_days=5, val_days=3, train_days=10)
    want = global_cold_brute_force(data, split)
    assert split.cold == want
    # the same key as the per-user split where the meaning is the same, and the data has cold cases
    assert min(want["test_cold"], want["test_users_unseen"], want["test_pins_unseen"]) > 0
    assert {"val_cold", "test_cold", "val_users_no_warm", "test_users_no_warm"} <= split.cold.keys()


def test_global_split_without_validation_counts_zero_val_cold():
    split = global_temporal_split(timed_data(6), test_days=5, val_days=0, train_days=10)
    assert split.val.empty
    assert [split.cold[f"val_{key}"] for key in ("cold", "users_no_warm", "users_unseen", "pins_unseen")] == [
        0,
        0,
        0,
        0,
    ]


def test_a_training_window_with_few_engagements_logs_a_warning_with_the_numbers(caplog):
    # 21 training days of a 400-day log: about 5% of the engagements
    data = timed_data(7, days=400, n=20_000)
    with caplog.at_level(logging.WARNING, logger="ebr.data.splits"):
        split = global_temporal_split(data, test_days=7, val_days=3, train_days=21)
    n_engagements = int((data.events["event"] >= CLICK).sum())
    assert len(split.train) < MIN_TRAIN_SHARE * n_engagements
    [record] = caplog.records
    message = record.getMessage()
    assert f"{len(split.train)} of {n_engagements} engagements" in message
    timestamps = data.events["timestamp"]
    span_days = (timestamps.max() + 1 - timestamps.min()) / SECONDS_PER_DAY
    assert f"21.0-day training window of {span_days:.1f} days" in message
    assert message.startswith("log.csv: ")  # the data set's source

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ebr.data.splits"):
        global_temporal_split(data, test_days=7, val_days=3, train_days=None)  # everything before val
    assert caplog.records == []


def test_a_per_user_split_with_a_small_training_part_warns_too(caplog):
    data = random_data(8, n_users=5, n_events=600)
    with caplog.at_level(logging.WARNING, logger="ebr.data.splits"):
        split = per_user_temporal_split(data, min_engagements=20, test_fraction=0.9, val_fraction=0.5)
    n_engagements = int((data.events["event"] >= CLICK).sum())
    assert len(split.train) < MIN_TRAIN_SHARE * n_engagements
    [record] = caplog.records
    assert f"{len(split.train)} of {n_engagements} engagements" in record.getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ebr.data.splits"):
        per_user_temporal_split(data)
    assert caplog.records == []
