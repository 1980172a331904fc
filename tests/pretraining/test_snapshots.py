"""The snapshot format: a save/load round trip, the id -> row mapping, and atomic publication."""

from __future__ import annotations

import functools
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ebr.models.artifact import ArtifactError
from ebr.pretraining import snapshots
from ebr.pretraining.integrity import verifiable, window_digest
from ebr.pretraining.selection import SnapshotSelectionError, list_snapshots, select_snapshot
from ebr.pretraining.snapshots import load_snapshot, save_snapshot

DATA = "synthetic:abc123"


def _save(
    root: Path, start: int = 100, end: int = 200, manifest: dict | None = None
) -> tuple[Path, dict, dict]:
    generator = torch.Generator().manual_seed(0)
    tables = {"user": torch.randn(4, 6, generator=generator), "pin": torch.randn(3, 6, generator=generator)}
    ids = {"user": np.array([2, 5, 7, 11]), "pin": np.array([0, 9, 40])}
    manifest = {
        "window": {"start": start, "end": end},
        "data_source": DATA,
        "config": {"pretrain": {"x": 1}},
        **(manifest or {}),
    }
    return save_snapshot(root, tables, ids, manifest), tables, ids


def test_a_snapshot_round_trips_tables_mapping_and_manifest(tmp_path: Path) -> None:
    path, tables, ids = _save(tmp_path)
    loaded = load_snapshot(path)
    for side in ("user", "pin"):
        torch.testing.assert_close(loaded.tables[side], tables[side], rtol=0, atol=0)
        assert loaded.ids[side].tolist() == ids[side].tolist()
        # the files are plain tensors: loadable without ebr, weights_only
        plain = torch.load(path / "tables.pt", weights_only=True)[side]
        torch.testing.assert_close(plain, tables[side], rtol=0, atol=0)
    # user id 7 is row 2, id 5 row 1; ids without a row map to -1
    assert loaded.rows("user", np.array([7, 5, 3, 12, 2])).tolist() == [2, 1, -1, -1, 0]
    assert loaded.rows("pin", np.array([40, 1])).tolist() == [2, -1]
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["rows"] == {"user": 4, "pin": 3}
    assert manifest["embedding_dim"] == 6
    assert manifest["config"] == {"pretrain": {"x": 1}}
    assert manifest["data_source"] == DATA
    assert loaded.manifest == manifest


def test_a_snapshot_of_the_same_window_is_replaced_whole(tmp_path: Path) -> None:
    first, _, _ = _save(tmp_path)
    tables = {"user": torch.zeros(1, 2), "pin": torch.ones(2, 2)}
    save_snapshot(
        tmp_path,
        tables,
        {"user": np.array([3]), "pin": np.array([1, 2])},
        {"window": {"start": 100, "end": 200}, "data_source": DATA},
    )
    assert [s.path for s in list_snapshots(tmp_path)] == [first]
    assert load_snapshot(first).tables["pin"].shape == (2, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name], "no temporary or trash left behind"


def test_a_write_killed_before_the_manifest_leaves_no_snapshot(tmp_path: Path, monkeypatch) -> None:
    _save(tmp_path, 0, 100)  # an older, complete snapshot

    def killed(path, data):  # the process dies while writing the manifest
        raise KeyboardInterrupt

    monkeypatch.setattr(snapshots, "write_json_atomic", killed)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, 100, 200)
    monkeypatch.undo()
    assert [s.end for s in list_snapshots(tmp_path)] == [100]
    assert select_snapshot(tmp_path, "latest", 10_000, DATA).end == 100


def test_a_temporary_directory_left_by_a_sigkill_is_never_selected(tmp_path: Path) -> None:
    # SIGKILL after the manifest but before the rename: the directory is whole but still temporary
    path, _, _ = _save(tmp_path, 100, 200)
    path.rename(tmp_path / f".tmp-{path.name}-abcd")
    _save(tmp_path, 0, 100)
    assert [s.end for s in list_snapshots(tmp_path)] == [100]
    with pytest.raises(FileNotFoundError):
        load_snapshot(tmp_path / f".tmp-{path.name}-abcd")


def test_ids_must_be_ascending_and_match_the_rows(tmp_path: Path) -> None:
    manifest = {"window": {"start": 0, "end": 1}, "data_source": DATA}
    with pytest.raises(ValueError, match="ascending"):
        save_snapshot(
            tmp_path,
            {"user": torch.zeros(2, 2), "pin": torch.zeros(1, 2)},
            {"user": np.array([3, 1]), "pin": np.array([0])},
            manifest,
        )
    with pytest.raises(ValueError, match="rows"):
        save_snapshot(
            tmp_path,
            {"user": torch.zeros(2, 2), "pin": torch.zeros(1, 2)},
            {"user": np.array([1]), "pin": np.array([0])},
            manifest,
        )
    assert list_snapshots(tmp_path) == []


def _digest_of(events: pd.DataFrame):
    return functools.partial(window_digest, events)


def _events(start: int, end: int) -> pd.DataFrame:
    """Engagements, one every 10 s over [start, end) and around it."""
    timestamps = np.arange(start - 50, end + 50, 10)
    return pd.DataFrame({"timestamp": timestamps, "user": timestamps % 7, "pin": timestamps % 5})


def test_a_swapped_tensor_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    """Issue 32 case 4: a swapped ids.pt gave a raw shape error naming no file."""
    path, _, _ = _save(tmp_path / "a")
    other = save_snapshot(
        tmp_path / "b",
        {"user": torch.zeros(2, 6), "pin": torch.zeros(5, 6)},
        {"user": np.array([1, 2]), "pin": np.arange(5)},
        {"window": {"start": 100, "end": 200}, "data_source": DATA},
    )
    shutil.copyfile(other / "ids.pt", path / "ids.pt")
    with pytest.raises(SnapshotSelectionError, match=re.escape(f"{path / 'ids.pt'} does not match")):
        select_snapshot(tmp_path / "a", "latest", 10_000, DATA)
    # without a recorded hash (an older manifest) the shapes still name the file
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["hashes"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=re.escape(f"{path / 'ids.pt'}: the user ids are (2,)")):
        load_snapshot(path)


def test_a_changed_tables_file_is_refused(tmp_path: Path) -> None:
    path, tables, _ = _save(tmp_path)
    (path / "tables.pt").write_bytes(snapshots._tensor_bytes({s: t * 2 for s, t in tables.items()}))
    with pytest.raises(SnapshotSelectionError, match=r"tables\.pt does not match"):
        select_snapshot(tmp_path, "latest", 10_000, DATA)


def test_the_window_is_checked_against_the_events_it_was_trained_on(tmp_path: Path) -> None:
    events = _events(100, 200)
    path, _, _ = _save(tmp_path, manifest={"window_events": window_digest(events, 100, 200)})
    chosen = select_snapshot(tmp_path, "latest", 10_000, DATA, window_events=_digest_of(events))
    assert chosen.path == path
    # another log at the same source (an event more in the window): refused, the counts named
    more = pd.concat([events, pd.DataFrame({"timestamp": [150], "user": [1], "pin": [1]})])
    with pytest.raises(SnapshotSelectionError, match="are not the 10 it was trained on"):
        select_snapshot(tmp_path, "latest", 10_000, DATA, window_events=_digest_of(more))
    # the row order does not matter
    shuffled = events.sample(frac=1.0, random_state=0)
    assert select_snapshot(tmp_path, "latest", 10_000, DATA, window_events=_digest_of(shuffled)).path == path


def test_a_window_edited_with_its_directory_renamed_is_refused_by_the_events(tmp_path: Path) -> None:
    events = _events(0, 400)
    path, _, _ = _save(tmp_path, 200, 300, manifest={"window_events": window_digest(events, 200, 300)})
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["window"] = {"start": 100, "end": 200}
    (path / "manifest.json").write_text(json.dumps(manifest))
    path.rename(tmp_path / snapshots.snapshot_name(100, 200))
    with pytest.raises(SnapshotSelectionError, match=r"window \[100, 200\)"):
        select_snapshot(tmp_path, "latest_no_overlap", 200, DATA, window_events=_digest_of(events))


def test_an_older_manifest_without_hashes_loads_with_a_warning(tmp_path: Path, caplog) -> None:
    path, tables, _ = _save(tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    for key in ("hashes", "window_events"):
        manifest.pop(key, None)
    manifest["format"] = 1
    (path / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level("WARNING", logger="ebr.pretraining"):
        chosen = select_snapshot(tmp_path, "latest", 10_000, DATA, window_events=_digest_of(_events(0, 10)))
    assert "cannot be verified" in caplog.text
    assert not verifiable(chosen.manifest)
    assert torch.equal(load_snapshot(chosen).tables["user"], tables["user"])
