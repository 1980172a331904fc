"""Snapshot windows and snapshot selection, on hand-made manifests (no training, no torch files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ebr.pretraining.selection import (
    SnapshotSelectionError,
    list_snapshots,
    select_snapshot,
    snapshot_windows,
)

DAY = 86_400
DATA = "synthetic:abc123"


def _snapshot(root: Path, name: str, start_day: float, end_day: float, data: str = DATA) -> Path:
    """A snapshot directory as ebr.pretraining.snapshots writes one (its tensor files are stand-ins)."""
    path = root / name
    path.mkdir(parents=True)
    (path / "tables.pt").write_bytes(b"x")
    (path / "ids.pt").write_bytes(b"x")
    manifest = {
        "format": 1,
        "window": {"start": int(start_day * DAY), "end": int(end_day * DAY)},
        "data_source": data,
        "embedding_dim": 8,
        "rows": {"user": 3, "pin": 2},
        "files": {"tables": "tables.pt", "ids": "ids.pt"},
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


@pytest.fixture
def snapshot_set(tmp_path: Path) -> Path:
    # training starts on day 30; the newest snapshot overlaps it, the others end on days 30, 23, 16
    _snapshot(tmp_path, "snapshot-a", 2, 16)
    _snapshot(tmp_path, "snapshot-b", 9, 23)
    _snapshot(tmp_path, "snapshot-c", 16, 30)
    _snapshot(tmp_path, "snapshot-d", 23, 37)
    return tmp_path


def test_latest_takes_the_newest_window_end_even_when_it_overlaps_training(snapshot_set: Path) -> None:
    assert select_snapshot(snapshot_set, "latest", 30 * DAY, DATA).path.name == "snapshot-d"


def test_latest_no_overlap_takes_the_newest_that_ends_by_the_training_start(snapshot_set: Path) -> None:
    chosen = select_snapshot(snapshot_set, "latest_no_overlap", 30 * DAY, DATA)
    assert chosen.path.name == "snapshot-c"
    assert chosen.end == 30 * DAY  # ending exactly at the training start is no overlap
    # one second earlier training start: day-30 snapshot now overlaps, day 23 is chosen
    assert select_snapshot(snapshot_set, "latest_no_overlap", 30 * DAY - 1, DATA).path.name == "snapshot-b"


def test_no_qualifying_snapshot_is_an_error_listing_every_snapshot_and_window(snapshot_set: Path) -> None:
    with pytest.raises(SnapshotSelectionError) as error:
        select_snapshot(snapshot_set, "latest_no_overlap", 15 * DAY, DATA)
    message = str(error.value)
    for name, window in (("snapshot-a", "[2, 16)"), ("snapshot-d", "[23, 37)")):
        assert name in message, message
        assert window in message, message


def test_an_empty_directory_qualifies_nothing(tmp_path: Path) -> None:
    with pytest.raises(SnapshotSelectionError, match="no complete snapshot"):
        select_snapshot(tmp_path, "latest", 30 * DAY, DATA)


def test_a_snapshot_of_another_data_set_is_refused_naming_both(tmp_path: Path) -> None:
    _snapshot(tmp_path, "snapshot-a", 2, 16)
    _snapshot(tmp_path, "snapshot-b", 9, 23, data="synthetic:other")
    with pytest.raises(SnapshotSelectionError) as error:
        select_snapshot(tmp_path, "latest", 30 * DAY, DATA)
    assert "synthetic:other" in str(error.value)
    assert DATA in str(error.value)
    # the older snapshot is of this data set and would be chosen under its policy
    assert select_snapshot(tmp_path, "latest_no_overlap", 20 * DAY, DATA).path.name == "snapshot-a"


def test_temporary_and_incomplete_directories_are_never_selected(tmp_path: Path) -> None:
    _snapshot(tmp_path, "snapshot-a", 2, 16)
    # a killed run's temporary directory, complete manifest and all, and a newer window
    _snapshot(tmp_path, ".tmp-snapshot-b-x1", 9, 29)
    # a snapshot-named directory whose manifest is cut short, one missing a file, one without manifest
    broken = _snapshot(tmp_path, "snapshot-c", 10, 28)
    (broken / "manifest.json").write_text('{"format": 1, "window": {"start": 0,')
    missing = _snapshot(tmp_path, "snapshot-d", 11, 27)
    (missing / "tables.pt").unlink()
    (tmp_path / "snapshot-e").mkdir()
    assert [s.path.name for s in list_snapshots(tmp_path)] == ["snapshot-a"]
    assert select_snapshot(tmp_path, "latest", 30 * DAY, DATA).path.name == "snapshot-a"


def test_unknown_policy_is_refused(snapshot_set: Path) -> None:
    with pytest.raises(ValueError, match="latest_no_overlap"):
        select_snapshot(snapshot_set, "newest", 30 * DAY, DATA)


def test_windows_follow_the_cadence_back_from_the_training_start() -> None:
    # training on days [40, 47), data from day 0: cadence 7, length 14 -> ends 40, 33, 26, 19
    # (the next, ending on day 12, would start on day -2, before the data)
    windows = snapshot_windows(0, 40 * DAY, 47 * DAY, every_days=7, window_days=14)
    assert windows == [((e - 14) * DAY, e * DAY) for e in (40, 33, 26, 19)]
    assert all(end <= 40 * DAY for _, end in windows)


def test_train_end_adds_one_newest_window_that_overlaps_training() -> None:
    windows = snapshot_windows(10 * DAY, 40 * DAY, 47 * DAY, every_days=7, window_days=14, end="train_end")
    assert windows == [(33 * DAY, 47 * DAY), (26 * DAY, 40 * DAY), (19 * DAY, 33 * DAY), (12 * DAY, 26 * DAY)]
    capped = snapshot_windows(10 * DAY, 40 * DAY, 47 * DAY, 7, 14, end="train_end", max_snapshots=2)
    assert capped == windows[:2]


def test_no_window_fitting_the_data_is_an_error_saying_what_to_change() -> None:
    with pytest.raises(ValueError, match="window_days"):
        snapshot_windows(30 * DAY, 40 * DAY, 47 * DAY, every_days=7, window_days=14)
    with pytest.raises(ValueError, match="end"):
        snapshot_windows(0, 40 * DAY, 47 * DAY, 7, 14, end="test_start")
