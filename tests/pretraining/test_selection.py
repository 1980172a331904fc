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


def test_temporary_directories_are_never_selected_and_damaged_ones_only_when_skipped(tmp_path: Path) -> None:
    _snapshot(tmp_path, "snapshot-a", 2, 16)
    # a killed run's temporary directory, complete manifest and all, and a newer window
    _snapshot(tmp_path, ".tmp-snapshot-b-x1", 9, 29)
    assert select_snapshot(tmp_path, "latest", 30 * DAY, DATA).path.name == "snapshot-a"
    # a snapshot-named directory whose manifest is cut short, one missing a file, one without manifest
    broken = _snapshot(tmp_path, "snapshot-c", 10, 28)
    (broken / "manifest.json").write_text('{"format": 1, "window": {"start": 0,')
    missing = _snapshot(tmp_path, "snapshot-d", 11, 27)
    (missing / "tables.pt").unlink()
    (tmp_path / "snapshot-e").mkdir()
    assert [s.path.name for s in list_snapshots(tmp_path)] == ["snapshot-a"]
    # their names say no window: any may be the newest, so none is passed over in silence
    with pytest.raises(SnapshotSelectionError, match="cannot be used"):
        select_snapshot(tmp_path, "latest", 30 * DAY, DATA)
    assert select_snapshot(tmp_path, "latest", 30 * DAY, DATA, skip_damaged=True).path.name == "snapshot-a"


def _named(root: Path, start_day: float, end_day: float) -> Path:
    """A snapshot under the name save_snapshot gives it (the window in seconds)."""
    start, end = int(start_day * DAY), int(end_day * DAY)
    return _snapshot(root, f"snapshot-{start:011d}-{end:011d}", start_day, end_day)


DAMAGES = ["deleted", "cut", "not_json", "keys_missing", "bad_window", "file_missing"]


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_newest_snapshot_stops_the_selection_naming_it(tmp_path: Path, damage: str, caplog) -> None:
    """Issue 32 case 3: days 2-16 were silently selected instead of the damaged 9-23."""
    _named(tmp_path, 2, 16)
    newest = _named(tmp_path, 9, 23)
    manifest = newest / "manifest.json"
    if damage == "deleted":
        manifest.unlink()
    elif damage == "cut":
        manifest.write_text(manifest.read_text()[:40])
    elif damage == "not_json":
        manifest.write_bytes(b"\x00\x01garbage")
    elif damage == "keys_missing":
        manifest.write_text(json.dumps({"format": 1}))
    elif damage == "bad_window":
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "window": {"start": "x"}}))
    else:
        (newest / "ids.pt").unlink()
    with pytest.raises(SnapshotSelectionError) as raised:
        select_snapshot(tmp_path, "latest_no_overlap", 30 * DAY, DATA)
    assert str(newest) in str(raised.value)
    assert "skip_damaged" in str(raised.value)
    # opted in: the older one, with a warning naming the skipped one
    with caplog.at_level("WARNING", logger="ebr.pretraining"):
        chosen = select_snapshot(tmp_path, "latest_no_overlap", 30 * DAY, DATA, skip_damaged=True)
    assert (chosen.start, chosen.end) == (2 * DAY, 16 * DAY)
    assert newest.name in caplog.text


def test_a_damaged_snapshot_older_than_the_chosen_one_does_not_matter(tmp_path: Path) -> None:
    (_named(tmp_path, 2, 16) / "manifest.json").unlink()
    _named(tmp_path, 9, 23)
    assert select_snapshot(tmp_path, "latest_no_overlap", 30 * DAY, DATA).end == 23 * DAY
    # a damaged one newer than the training start is no candidate under latest_no_overlap
    (_named(tmp_path, 23, 37) / "manifest.json").unlink()
    assert select_snapshot(tmp_path, "latest_no_overlap", 30 * DAY, DATA).end == 23 * DAY
    with pytest.raises(SnapshotSelectionError, match="cannot be used"):
        select_snapshot(tmp_path, "latest", 30 * DAY, DATA)


def test_a_manifest_whose_window_was_edited_is_refused(tmp_path: Path) -> None:
    """Issue 32 case 4: an overlapping snapshot's window edited to end before training starts."""
    _named(tmp_path, 9, 23)
    overlapping = _named(tmp_path, 23, 37)
    manifest = json.loads((overlapping / "manifest.json").read_text())
    manifest["window"] = {"start": 16 * DAY, "end": 30 * DAY}
    (overlapping / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SnapshotSelectionError, match="directory was written for"):
        select_snapshot(tmp_path, "latest_no_overlap", 30 * DAY, DATA)


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
