"""The snapshot format: save a set of pre-trained ID tables atomically, load one back.

A snapshot is a directory `snapshot-<start>-<end>` (window bounds in seconds) holding

- `tables.pt`: `{"user": (n_users, d), "pin": (n_pins, d)}` float32 tensors, the raw table rows
  (the model L2-normalises them before scoring; `manifest["normalized"]`);
- `ids.pt`: `{"user": (n_users,), "pin": (n_pins,)}` int64 tensors: row i of a table is the
  entity whose data row id (the `user` / `pin` of the events) is `ids[i]`, sorted ascending;
- `manifest.json`: window, dimensions, row counts, the sha256 of both tensor files (`hashes`), the
  count and digest of the window's engagement events (`window_events`), the data set's identity,
  training figures and the pre-training config, written last.

Both tensor files load with `torch.load(path, weights_only=True)`. The directory is written as a
temporary `.tmp-*` sibling and renamed into place when complete, so a killed run never leaves a
directory that looks like a snapshot (`selection.read_snapshot` ignores anything else).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ebr.models.artifact import ArtifactError, load_weights
from ebr.pretraining.integrity import bytes_sha256
from ebr.pretraining.selection import (
    FORMAT_VERSION,
    IDS_FILE,
    MANIFEST_FILE,
    SNAPSHOT_PREFIX,
    TABLES_FILE,
    SnapshotInfo,
    read_snapshot,
)
from ebr.runs import publish_directory, remove_directory, write_bytes_atomic, write_json_atomic

SIDES = ("user", "pin")


@dataclass(frozen=True)
class Snapshot:
    """A loaded snapshot.

    Args:
        tables: side ("user", "pin") -> (rows, d) float32 table.
        ids: side -> (rows,) int64 data row ids, ascending: row i of the table is id ids[i].
        manifest: the snapshot's manifest.
    """

    tables: dict[str, torch.Tensor]
    ids: dict[str, torch.Tensor]
    manifest: dict[str, Any]

    def rows(self, side: str, ids: np.ndarray | torch.Tensor) -> np.ndarray:
        """The table row of each data id of `side`, -1 where the snapshot has none.

        Args:
            side: "user" or "pin".
            ids: data row ids.
        """
        known = self.ids[side].numpy()
        wanted = np.asarray(ids, dtype=np.int64)
        if not len(known):
            return np.full(wanted.shape, -1, dtype=np.int64)
        position = np.searchsorted(known, wanted).clip(max=len(known) - 1)
        return np.where(known[position] == wanted, position, -1)


def snapshot_name(start: int, end: int) -> str:
    """The directory name of the snapshot of window [start, end) (seconds, zero-padded to sort)."""
    return f"{SNAPSHOT_PREFIX}{start:011d}-{end:011d}"


def _tensor_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, buffer)
    return buffer.getvalue()


def save_snapshot(
    snapshot_dir: str | Path,
    tables: dict[str, torch.Tensor],
    ids: dict[str, np.ndarray],
    manifest: dict[str, Any],
) -> Path:
    """Write a snapshot under `snapshot_dir` atomically; a snapshot of the same window is replaced.

    Args:
        snapshot_dir: the snapshot set's directory (created when absent).
        tables: side -> (rows, d) table.
        ids: side -> (rows,) ascending data row ids of the table rows.
        manifest: must hold `window` {"start", "end"}, `data_source` (and, from `ebr-pretrain`,
            `window_events`); `format`, `embedding_dim`, `rows`, `files` and `hashes` are filled in here.

    Returns:
        The snapshot's directory.
    """
    for side in SIDES:
        side_ids = np.asarray(ids[side], dtype=np.int64)
        if len(side_ids) != tables[side].shape[0]:
            raise ValueError(f"{side}: {len(side_ids)} ids for a table of {tables[side].shape[0]} rows")
        if len(side_ids) > 1 and not np.all(np.diff(side_ids) > 0):
            raise ValueError(f"{side}: ids must be strictly ascending (one row per id)")
    root = Path(snapshot_dir)
    root.mkdir(parents=True, exist_ok=True)
    window = manifest["window"]
    final = root / snapshot_name(int(window["start"]), int(window["end"]))
    content = {
        TABLES_FILE: _tensor_bytes({s: tables[s].float() for s in SIDES}),
        IDS_FILE: _tensor_bytes({s: torch.from_numpy(np.asarray(ids[s], np.int64)) for s in SIDES}),
    }
    full = {
        **manifest,
        "format": FORMAT_VERSION,
        "embedding_dim": int(tables["user"].shape[1]),
        "rows": {side: int(tables[side].shape[0]) for side in SIDES},
        "files": {"tables": TABLES_FILE, "ids": IDS_FILE},
        # selection re-hashes the files: a swapped or changed file is refused, not trusted
        "hashes": {"tables": bytes_sha256(content[TABLES_FILE]), "ids": bytes_sha256(content[IDS_FILE])},
    }

    def fill(tmp: Path) -> None:
        for name, data in content.items():
            write_bytes_atomic(tmp / name, data)
        write_json_atomic(tmp / MANIFEST_FILE, full)  # last: a manifest means the files are whole

    publish_directory(final, fill)  # a re-run replaces an existing snapshot
    return final


def discard_snapshots(snapshot_dir: str | Path) -> int:
    """Remove every snapshot under `snapshot_dir` (a re-run's set replaces the old one); returns how many."""
    root = Path(snapshot_dir)
    removed = 0
    if not root.is_dir():
        return 0
    for entry in root.iterdir():
        if entry.name.startswith((SNAPSHOT_PREFIX, ".tmp-", ".trash-")) and entry.is_dir():
            # renamed first, so a reader never sees a snapshot half removed
            remove_directory(entry)
            removed += entry.name.startswith(SNAPSHOT_PREFIX)
    return removed


def load_snapshot(path: str | Path | SnapshotInfo) -> Snapshot:
    """Load a complete snapshot (plain tensors, `weights_only=True`).

    Args:
        path: the snapshot's directory, or its `SnapshotInfo` from `select_snapshot`.

    Raises:
        FileNotFoundError: when the directory is not a complete snapshot.
        ArtifactError: naming the file, when a tensor file is truncated or damaged.
    """
    directory = path.path if isinstance(path, SnapshotInfo) else Path(path)
    info = read_snapshot(directory)
    if info is None:
        raise FileNotFoundError(f"{directory} is not a complete snapshot (no valid {MANIFEST_FILE})")
    files = info.manifest["files"]
    tables = load_weights(directory / files["tables"], "ID snapshot tensor file")
    ids = load_weights(directory / files["ids"], "ID snapshot tensor file")
    for name, content in (("tables", tables), ("ids", ids)):
        if not isinstance(content, dict) or set(content) != set(SIDES):
            raise ArtifactError(f"{directory / files[name]}: expected a {{user, pin}} tensor mapping")
    check_shapes(directory, tables, ids, info.manifest)
    return Snapshot(tables=dict(tables), ids=dict(ids), manifest=info.manifest)


def check_shapes(
    directory: Path, tables: dict[str, torch.Tensor], ids: dict[str, torch.Tensor], manifest: dict[str, Any]
) -> None:
    """Refuse tensors that are not the manifest's: each side's table (rows, embedding_dim), its ids
    (rows,) int64; the message names the file (a swapped file is caught here when no hash is recorded).

    Args:
        directory: the snapshot's directory.
        tables: side -> loaded table.
        ids: side -> loaded ids.
        manifest: the snapshot's manifest (`rows`, `embedding_dim`, `files`).
    """
    files = manifest["files"]
    for side in SIDES:
        rows, width = int(manifest["rows"][side]), int(manifest["embedding_dim"])
        table, side_ids = tables[side], ids[side]
        if not isinstance(table, torch.Tensor) or tuple(table.shape) != (rows, width):
            shape = tuple(getattr(table, "shape", ()))
            raise ArtifactError(
                f"{directory / files['tables']}: the {side} table is {shape}, "
                f"its manifest says ({rows}, {width})"
            )
        ids_ok = isinstance(side_ids, torch.Tensor) and not side_ids.is_floating_point()
        if not ids_ok or tuple(side_ids.shape) != (rows,):
            shape = tuple(getattr(side_ids, "shape", ()))
            raise ArtifactError(
                f"{directory / files['ids']}: the {side} ids are {shape}, "
                f"its manifest says ({rows},) integer ids"
            )
