"""The snapshot format: a save/load round trip, the id -> row mapping, and atomic publication."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ebr.pretraining import snapshots
from ebr.pretraining.selection import list_snapshots, select_snapshot
from ebr.pretraining.snapshots import load_snapshot, save_snapshot

DATA = "synthetic:abc123"


def _save(root: Path, start: int = 100, end: int = 200) -> tuple[Path, dict, dict]:
    generator = torch.Generator().manual_seed(0)
    tables = {"user": torch.randn(4, 6, generator=generator), "pin": torch.randn(3, 6, generator=generator)}
    ids = {"user": np.array([2, 5, 7, 11]), "pin": np.array([0, 9, 40])}
    manifest = {"window": {"start": start, "end": end}, "data_source": DATA, "config": {"pretrain": {"x": 1}}}
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
