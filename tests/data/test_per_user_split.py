"""Per-user temporal split against a plain per-user loop on random data."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ebr.data.per_user_split import per_user_temporal_split
from ebr.data.schema import (
    CLICK,
    IMPRESSION,
    NO_INTEREST,
    REPIN,
    CategoricalFeature,
    FeatureTable,
    InteractionData,
)

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
    cfg = OmegaConf.load(REPO / "conf" / "split" / "per_user_temporal.yaml")
    split_fn = instantiate(cfg)
    data = random_data(4)
    expected = per_user_temporal_split(data, 5, 0.2, 0.2)
    assert as_rows(split_fn(data).test) == as_rows(expected.test)
