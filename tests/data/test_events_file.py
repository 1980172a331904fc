"""Generic event-log loader: CSV and Parquet files written here, column mapping, feature files, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ebr.data.loaders.events_file import load_events_file
from ebr.data.schema import CLICK, IMPRESSION, REPIN, DataValidationError

REPO = Path(__file__).resolve().parents[2]
COLUMNS = {"user": "uid", "item": "sku", "timestamp": "ts"}


def log_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "uid": ["bob", "alice", "carol", "alice", "bob"],
            "sku": ["x9", "a1", "a1", "b2", "b2"],
            "ts": [5_000, 1_000, 3_000, 2_000, 4_000],
            "kind": ["click", "impression", "repin", "CLICK", "impression"],
            "stars": [5.0, 1.0, 4.0, 3.0, 4.5],
        }
    )


def mapped_rows(data) -> set[tuple]:
    """Events as (original user, original item, timestamp, event) tuples."""
    users, pins = data.users.meta["original_id"], data.pins.meta["original_id"]
    return {
        (users[u], pins[p], int(t), int(e))
        for u, p, t, e in data.events[["user", "pin", "timestamp", "event"]].to_numpy()
    }


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_csv_and_parquet_with_event_column(tmp_path: Path, suffix: str) -> None:
    frame = log_frame()
    path = tmp_path / f"log{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path, index=False)
    data = load_events_file(path, {**COLUMNS, "event": "kind"})
    # dense ids in sorted key order
    assert list(data.users.meta["original_id"]) == ["alice", "bob", "carol"]
    assert list(data.pins.meta["original_id"]) == ["a1", "b2", "x9"]
    codes = {"click": CLICK, "impression": IMPRESSION, "repin": REPIN}
    want = {(u, s, t, codes[k.lower()]) for u, s, t, k in frame[["uid", "sku", "ts", "kind"]].to_numpy()}
    assert mapped_rows(data) == want
    assert list(data.events["timestamp"]) == sorted(frame["ts"])
    assert data.name == "events:log"
    assert data.n_interests == 0


def test_rating_threshold_and_millisecond_timestamps(tmp_path: Path) -> None:
    frame = log_frame().assign(ts=lambda f: f["ts"] * 1000 + 999)
    path = tmp_path / "log.csv"
    frame.to_csv(path, index=False)
    data = load_events_file(path, {**COLUMNS, "rating": "stars"}, min_rating=4.0, timestamp_unit="ms")
    want = {
        (u, s, t // 1000, CLICK if r >= 4.0 else IMPRESSION)
        for u, s, t, r in frame[["uid", "sku", "ts", "stars"]].to_numpy()
    }
    assert mapped_rows(data) == want


def test_without_event_column_every_row_is_an_engagement(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    log_frame().to_csv(path, index=False)
    data = load_events_file(path, COLUMNS)
    assert (data.events["event"] == CLICK).all()
    assert len(data.engagements()) == 5


def test_iso_datetime_strings(tmp_path: Path) -> None:
    frame = log_frame().assign(
        ts=["1970-01-01T00:00:05Z", "1970-01-01T00:00:01Z", "1970-01-02", "1970-01-01", "1970-01-01"]
    )
    path = tmp_path / "log.csv"
    frame.to_csv(path, index=False)
    data = load_events_file(path, COLUMNS, timestamp_unit="datetime")
    assert sorted(data.events["timestamp"]) == [0, 0, 1, 5, 86_400]


def test_feature_files(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    log_frame().to_csv(path, index=False)
    users = pd.DataFrame({"uid": ["carol", "bob", "alice", "dave"], "country": ["fr", None, "us", "de"]})
    users.to_csv(tmp_path / "users.csv", index=False)
    items = pd.DataFrame(
        {
            "sku": ["x9", "b2", "a1"],
            "price": [9.5, 2.0, 1.25],
            "tags": ["red|big", "", "big"],
            "topics": ["sport", "cooking|sport", None],
        }
    )
    items.to_parquet(tmp_path / "items.parquet", index=False)
    spec = {
        "path": str(tmp_path / "items.parquet"),
        "dense": ["price"],
        "multi_valued": ["tags"],
        "interest": "topics",
    }
    data = load_events_file(path, COLUMNS, user_features=tmp_path / "users.csv", item_features=spec)
    # users alice, bob, carol: countries us, missing, fr -> vocabulary (de, fr, us) + reserved 0 for missing
    country = data.users.categorical["country"]
    assert list(country.values) == [3, 0, 2]
    assert country.cardinality == 4
    # items a1, b2, x9
    assert data.pins.dense["price"].tolist() == [1.25, 2.0, 9.5]
    tags = data.pins.categorical["tags"]  # vocabulary (big, red)
    assert tags.offsets.tolist() == [0, 1, 1, 3]
    assert tags.values.tolist() == [0, 1, 0]  # each row's tokens in file order: big; -; red, big
    interest = data.pins.categorical["interest"]  # vocabulary (cooking, sport)
    assert data.n_interests == 2
    assert interest.offsets.tolist() == [0, 0, 2, 3]
    assert interest.values.tolist() == [0, 1, 1]


def test_missing_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    log_frame().to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"log\.csv: missing column 'time' \(columns\.timestamp\)"):
        load_events_file(path, {**COLUMNS, "timestamp": "time"})


def test_bad_rows_name_file_column_and_row(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    log_frame().assign(ts=["1", "2", "later", "4", "5"]).to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"log\.csv: column 'ts' row 2: value 'later'"):
        load_events_file(path, COLUMNS)
    log_frame().assign(kind=["click", "view", "click", "click", "click"]).to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"log\.csv: column 'kind' row 1: unknown event 'view'"):
        load_events_file(path, {**COLUMNS, "event": "kind"})
    log_frame().assign(uid=["a", None, "b", "c", "d"]).to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"log\.csv: column 'uid' row 1: missing value"):
        load_events_file(path, COLUMNS)
    log_frame().assign(ts=[1, 2, -3, 4, 5]).to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"log\.csv: column 'timestamp' row \d: value -3"):
        load_events_file(path, COLUMNS)


def test_feature_file_missing_entity_and_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    log_frame().to_csv(path, index=False)
    pd.DataFrame({"uid": ["alice", "bob"], "age": [1.0, 2.0]}).to_csv(tmp_path / "u.csv", index=False)
    with pytest.raises(DataValidationError, match=r"u\.csv: 1 key\(s\).*first 'carol'"):
        load_events_file(path, COLUMNS, user_features=tmp_path / "u.csv")
    with pytest.raises(ValueError, match="unknown key"):
        load_events_file(path, {**COLUMNS, "colour": "c"})
    with pytest.raises(ValueError, match="together"):
        load_events_file(path, COLUMNS, min_rating=3.0)
    (tmp_path / "log.json").write_text("{}")
    with pytest.raises(DataValidationError, match="unknown file type"):
        load_events_file(tmp_path / "log.json", COLUMNS)


def test_hydra_config(tmp_path: Path) -> None:
    frame = log_frame().rename(columns={"uid": "user_id", "sku": "item_id", "ts": "timestamp"})
    path = tmp_path / "events.parquet"
    frame.to_parquet(path, index=False)
    cfg = OmegaConf.load(REPO / "conf" / "data" / "events_file.yaml")
    cfg.path = str(path)
    data = instantiate(cfg)
    assert data.users.n_rows == 3
    assert np.array_equal(
        np.sort(data.events["timestamp"].to_numpy()), np.sort(frame["timestamp"].to_numpy())
    )


def test_exact_duplicate_rows_are_refused_dropped_or_kept(tmp_path: Path, caplog) -> None:
    """Issue 32 case 5: a row logged twice counted its engagement twice, silently."""
    frame = log_frame()
    doubled = pd.concat([frame, frame.iloc[[1, 3]]], ignore_index=True)  # alice's two rows twice
    path = tmp_path / "log.csv"
    doubled.to_csv(path, index=False)
    columns = {**COLUMNS, "event": "kind"}
    with pytest.raises(DataValidationError, match=r"log\.csv: 2 exact duplicate event rows") as raised:
        load_events_file(path, columns)
    assert "data.duplicates=drop" in str(raised.value)
    with caplog.at_level("WARNING", logger="ebr.data"):
        dropped = load_events_file(path, columns, duplicates="drop")
    assert "2 exact duplicate event rows (data.duplicates=drop)" in caplog.text
    assert dropped.duplicate_rows == 2
    assert mapped_rows(dropped) == mapped_rows(load_events_file(_written(frame, tmp_path), columns))
    assert len(dropped.events) == len(frame)
    kept = load_events_file(path, columns, duplicates="keep")
    assert (len(kept.events), kept.duplicate_rows) == (len(doubled), 2)
    assert load_events_file(_written(frame, tmp_path), columns).duplicate_rows == 0
    with pytest.raises(ValueError, match=r"data\.duplicates='twice' is not one of"):
        load_events_file(path, columns, duplicates="twice")


def _written(frame: pd.DataFrame, tmp_path: Path) -> Path:
    path = tmp_path / "single.csv"
    frame.to_csv(path, index=False)
    return path
