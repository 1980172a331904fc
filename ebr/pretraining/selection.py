"""Which snapshots to write and which one a retrieval job reads: pure rules, no torch.

Two rules live here so that the retrieval side can import them without the trainer:

- `snapshot_windows`: the windows `ebr-pretrain` trains a snapshot on (cadence, length, end);
- `select_snapshot`: the snapshot a retrieval job uses (`latest`, `latest_no_overlap`).

A snapshot is a directory whose `manifest.json` is complete (written last, and the directory is
renamed into place only after it: ebr.pretraining.snapshots); a temporary `.tmp-*` directory of a
killed run or a stray file is never selected. A `snapshot-*` directory that cannot be read, or whose
files or window do not match its manifest (ebr.pretraining.integrity), is never passed over in
silence: it stops the selection when it is the newest candidate.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ebr.data.schema import SECONDS_PER_DAY
from ebr.pretraining.integrity import WindowDigest, name_window, verifiable, verify_snapshot

log = logging.getLogger("ebr.pretraining")

MANIFEST_FILE = "manifest.json"
TABLES_FILE = "tables.pt"
IDS_FILE = "ids.pt"
SNAPSHOT_PREFIX = "snapshot-"
# 2: the manifest records its files' sha256 (`hashes`) and its window's events (`window_events`)
FORMAT_VERSION = 2
SNAPSHOT_ENDS = ("train_start", "train_end")
POLICIES = ("latest", "latest_no_overlap")
# keys a manifest must hold to count as complete
_REQUIRED = ("format", "window", "data_source", "embedding_dim", "rows", "files")


class SnapshotSelectionError(ValueError):
    """No snapshot qualifies, or the chosen one comes from another data set (the message says why)."""


@dataclass(frozen=True)
class SnapshotInfo:
    """One complete snapshot as its manifest describes it.

    Args:
        path: the snapshot's directory.
        start: its training window's first second.
        end: its training window's end (excluded), in seconds.
        data_source: the data set it was trained on (`InteractionData.source`).
        manifest: the whole manifest.
    """

    path: Path
    start: int
    end: int
    data_source: str
    manifest: dict[str, Any]

    def describe(self) -> str:
        return (
            f"{self.path.name}: window [{self.start}, {self.end}) s = days "
            f"[{self.start / SECONDS_PER_DAY:g}, {self.end / SECONDS_PER_DAY:g}), data {self.data_source}"
        )


class NoSnapshotWindowError(ValueError):
    """Not one snapshot window fits before the training window; `short_days` says by how much.

    Args:
        pretrain_start: the earliest second a window may cover.
        train_start: the retrieval training window's start.
        window_days: each window's length.
    """

    def __init__(self, pretrain_start: int, train_start: int, window_days: float) -> None:
        available = (train_start - pretrain_start) / SECONDS_PER_DAY
        # the longest window that fits now (whole days), and the whole days the span before
        # training lacks for this one (a window must start at or after pretrain_start)
        self.longest_days = max(math.floor(available), 0)
        self.short_days = max(math.ceil(window_days - available), 1)
        self.facts = (
            f"no {window_days:g}-day snapshot window fits between the pretraining window's start "
            f"(day {pretrain_start / SECONDS_PER_DAY:g}) and the training window's start (day "
            f"{train_start / SECONDS_PER_DAY:g}): {self.short_days} day(s) too few before training"
        )
        super().__init__(f"{self.facts}; {self.advice()}")

    def advice(self, more_days: Sequence[str] = ()) -> str:
        """What to change: a shorter window when one would fit, else more days before training.

        Args:
            more_days: overrides that each give the data the `short_days` it lacks (the caller
                knows the data and split configs); empty: said in words.
        """
        shorter = f"pretrain.snapshot.window_days={self.longest_days}, or " if self.longest_days >= 1 else ""
        longer = " or ".join(more_days) or (
            f"{self.short_days} more day(s) of data before the training window (a longer data span, "
            "a shorter split.train_days, or a longer split.pretrain_days when it is set)"
        )
        return f"use {shorter}{longer}"


def snapshot_windows(
    pretrain_start: int,
    train_start: int,
    train_end: int,
    every_days: float,
    window_days: float,
    end: str = "train_start",
    max_snapshots: int | None = None,
) -> list[tuple[int, int]]:
    """The (start, end) windows, in seconds and newest first, that snapshots are trained on.

    Window k ends at `train_start - k * every_days` and covers the `window_days` before its end;
    windows are laid back while the whole window lies at or after `pretrain_start` (the start of the
    split's pretraining window: `split.pretrain_days` before training, or the first event). With
    `end="train_end"` one more, newest window ends at `train_end` (it overlaps the retrieval
    training window: the ablation of the no-overlap policy needs both kinds). `max_snapshots` keeps
    the newest ones.

    Args:
        pretrain_start: the earliest second a window may cover.
        train_start: the retrieval training window's start.
        train_end: the retrieval training window's end (excluded).
        every_days: cadence of the window ends (> 0).
        window_days: each window's length (> 0).
        end: "train_start" or "train_end".
        max_snapshots: at most this many windows (None: all that fit).

    Raises:
        ValueError: for bad parameters; `NoSnapshotWindowError` when not one window fits in the data.
    """
    if every_days <= 0 or window_days <= 0:
        raise ValueError(
            f"pretrain.snapshot.every_days and window_days must be > 0, got {every_days}, {window_days}"
        )
    if end not in SNAPSHOT_ENDS:
        raise ValueError(f"pretrain.snapshot.end={end!r} is not one of {list(SNAPSHOT_ENDS)}")
    if max_snapshots is not None and max_snapshots < 1:
        raise ValueError(f"pretrain.snapshot.max_snapshots must be >= 1 or null, got {max_snapshots}")
    length, step = round(window_days * SECONDS_PER_DAY), round(every_days * SECONDS_PER_DAY)
    windows = []
    if end == "train_end" and train_end - length >= pretrain_start:
        windows.append((train_end - length, train_end))
    stop = train_start
    while stop - length >= pretrain_start:
        windows.append((stop - length, stop))
        stop -= step
    if not windows:
        raise NoSnapshotWindowError(pretrain_start, train_start, window_days)
    return windows[:max_snapshots] if max_snapshots is not None else windows


@dataclass(frozen=True)
class DamagedSnapshot:
    """A `snapshot-*` directory that cannot be read as a snapshot.

    Args:
        path: the directory.
        reason: what is wrong (a missing or unparsable manifest, a missing file).
        start: the window's start its name says (None: a name that says none).
        end: the window's end its name says (None: likewise; such a one counts as the newest).
    """

    path: Path
    reason: str
    start: int | None
    end: int | None

    def describe(self) -> str:
        return f"{self.path.name}: damaged ({self.reason})"


def inspect_snapshot(path: Path) -> SnapshotInfo | DamagedSnapshot | None:
    """The snapshot in `path`, what is wrong with it, or None for an entry that is no snapshot.

    Args:
        path: a directory entry of a snapshot directory.
    """
    if not path.name.startswith(SNAPSHOT_PREFIX) or not path.is_dir():
        return None  # temporary (".tmp-...") and discarded (".trash-...") directories start with a dot
    named = name_window(path)

    def damaged(reason: str) -> DamagedSnapshot:
        return DamagedSnapshot(path, reason, *(named or (None, None)))

    try:
        manifest = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
    except OSError:
        return damaged(f"no readable {MANIFEST_FILE}")
    except ValueError:
        return damaged(f"{MANIFEST_FILE} does not parse")
    if not isinstance(manifest, dict) or any(key not in manifest for key in _REQUIRED):
        return damaged(f"{MANIFEST_FILE} lacks keys of {list(_REQUIRED)}")
    files = manifest["files"]
    if not isinstance(files, dict):
        return damaged(f"{MANIFEST_FILE}: 'files' is not a mapping")
    absent = [str(name) for name in files.values() if not (path / str(name)).is_file()]
    if absent:
        return damaged(f"missing {', '.join(absent)}")
    try:
        start, end = int(manifest["window"]["start"]), int(manifest["window"]["end"])
    except (TypeError, KeyError, ValueError):
        return damaged(f"{MANIFEST_FILE}: 'window' holds no integer start and end")
    return SnapshotInfo(path, start, end, str(manifest["data_source"]), manifest)


def read_snapshot(path: Path) -> SnapshotInfo | None:
    """The snapshot in `path` when it is one: a `snapshot-*` directory with a complete manifest.

    Args:
        path: a directory entry of a snapshot directory.
    """
    found = inspect_snapshot(path)
    return found if isinstance(found, SnapshotInfo) else None


def scan_snapshots(snapshot_dir: str | Path) -> list[SnapshotInfo | DamagedSnapshot]:
    """Every `snapshot-*` directory under `snapshot_dir`, readable or damaged, oldest window end first
    (a damaged one whose name says no window sorts last: it may be the newest).

    Args:
        snapshot_dir: the directory `ebr-pretrain` wrote its snapshot set to.
    """
    root = Path(snapshot_dir)
    if not root.is_dir():
        return []
    found = [entry for path in root.iterdir() if (entry := inspect_snapshot(path)) is not None]
    return sorted(found, key=_age)


def _age(entry: SnapshotInfo | DamagedSnapshot) -> tuple[float, float, str]:
    end = math.inf if entry.end is None else entry.end
    start = math.inf if entry.start is None else entry.start
    return end, start, entry.path.name


def list_snapshots(snapshot_dir: str | Path) -> list[SnapshotInfo]:
    """Every complete snapshot under `snapshot_dir`, oldest window end first.

    Args:
        snapshot_dir: the directory `ebr-pretrain` wrote its snapshot set to.
    """
    return [entry for entry in scan_snapshots(snapshot_dir) if isinstance(entry, SnapshotInfo)]


def select_snapshot(
    snapshot_dir: str | Path,
    policy: str,
    train_start: int,
    data_hash: str,
    window_events: WindowDigest | None = None,
    skip_damaged: bool = False,
) -> SnapshotInfo:
    """The snapshot a retrieval job trained from `train_start` on uses, verified.

    - `latest`: the snapshot whose window ends last (ties: the one starting last, then by name).
    - `latest_no_overlap`: the same among snapshots whose window ends at or before `train_start`,
      so its tables have seen nothing of the retrieval training window.

    The candidate is verified (`verify_snapshot`): its files' hashes, its window against its name
    and, with `window_events`, against the events of the job's own data. A damaged or unverified
    candidate stops the selection naming it: falling back to an older snapshot would change the
    run's condition under it. With `skip_damaged` it is skipped with a logged warning instead.

    The chosen snapshot must come from the same data set: its manifest's `data_source` must equal
    `data_hash` (a snapshot's row mapping is in the data set's own row ids, meaningless elsewhere).

    Args:
        snapshot_dir: the snapshot set's directory.
        policy: "latest" or "latest_no_overlap".
        train_start: the retrieval training window's first second.
        data_hash: the retrieval job's data identity, `InteractionData.source` (the
            `info.data_source` of run.json; "synthetic:<world config hash>" for the synthetic world).
        window_events: start, end -> `window_digest` of the job's data (None: not re-derived).
        skip_damaged: skip damaged or mismatching snapshots (warning) instead of failing.

    Raises:
        SnapshotSelectionError: naming the snapshot and the file when the newest qualifying one is
            damaged or does not match, listing the snapshots when none qualifies, or naming both
            data sets when the chosen snapshot comes from another one.
        ValueError: for an unknown policy.
    """
    if policy not in POLICIES:
        raise ValueError(f"snapshot policy {policy!r} is not one of {list(POLICIES)}")
    entries = scan_snapshots(snapshot_dir)
    eligible = [e for e in entries if policy == "latest" or e.end is None or e.end <= train_start]
    for entry in reversed(eligible):
        if isinstance(entry, DamagedSnapshot):
            problem = entry.reason
        elif (problem := verify_snapshot(entry.path, entry.manifest, window_events)) is None:
            return _same_data(entry, data_hash)
        if not skip_damaged:
            raise SnapshotSelectionError(
                f"snapshot {entry.path} cannot be used: {problem}. It is the newest under policy "
                f"{policy!r}; an older one is not chosen in its place (the run's condition would change "
                "silently): re-run ebr-pretrain, remove the snapshot, or set "
                "model.id_embedding.skip_damaged=true to skip damaged snapshots"
            )
        log.warning("skipping snapshot %s (model.id_embedding.skip_damaged=true): %s", entry.path, problem)
    listed = "\n  ".join(s.describe() for s in entries) or "(no complete snapshot)"
    raise SnapshotSelectionError(
        f"no snapshot in {snapshot_dir} qualifies under policy {policy!r} for a training window "
        f"starting at {train_start} s (day {train_start / SECONDS_PER_DAY:g}); "
        f"the snapshots:\n  {listed}"
    )


def _same_data(chosen: SnapshotInfo, data_hash: str) -> SnapshotInfo:
    if chosen.data_source != data_hash:
        raise SnapshotSelectionError(
            f"{chosen.path} was trained on data {chosen.data_source!r}, but this job reads "
            f"{data_hash!r}: a snapshot's rows are another data set's ids; pre-train on this data set "
            "(ebr-pretrain with the same data config) or point at its snapshot directory"
        )
    if not verifiable(chosen.manifest):
        log.warning(
            "snapshot %s was written before snapshots recorded their files' hashes: its content "
            "cannot be verified (re-run ebr-pretrain to write a verifiable set)",
            chosen.path,
        )
    return chosen


def snapshot_dir_problem(snapshot_dir: str | Path) -> str | None:
    """Why `snapshot_dir` cannot be a snapshot set, or None; read before any data work.

    Only the directory and its snapshot folders' names are looked at: which snapshot qualifies,
    and whether its files are whole, is `select_snapshot`'s to say once the training window is known.

    Args:
        snapshot_dir: the `model.id_embedding.snapshot_dir` a retrieval job names.
    """
    root = Path(snapshot_dir).expanduser()
    if not root.exists():
        return "no such directory"
    if not root.is_dir():
        return "a file, not a directory"
    if any(entry.name.startswith(SNAPSHOT_PREFIX) and entry.is_dir() for entry in root.iterdir()):
        return None
    inner = root / "snapshots"  # an ebr-pretrain run directory holds its set there by default
    if inner.is_dir() and snapshot_dir_problem(inner) is None:
        return f"holds no {SNAPSHOT_PREFIX}* folder; its snapshots/ does: use {inner}"
    return (
        f"holds no {SNAPSHOT_PREFIX}* folder (run ebr-pretrain first; its snapshots are in "
        "<run dir>/snapshots)"
    )
