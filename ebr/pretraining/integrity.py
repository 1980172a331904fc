"""What makes a snapshot trustworthy: its files' hashes and the digest of the events it was trained on.

Pure rules, no torch (the retrieval side imports them through `selection`):

- `file_sha256`: the hash the manifest records of `tables.pt` and `ids.pt` (`manifest["hashes"]`);
- `window_digest`: the count and hash of the engagement events of a window (`manifest["window_events"]`),
  re-derived from a job's own data on selection, so a manifest whose window was edited, or a
  snapshot trained on other events, is refused instead of trusted;
- `verify_snapshot`: every check of one snapshot against its manifest (and the data), as a message.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# a snapshot directory's name: snapshot-<start>-<end> (seconds), the window it was written for
_NAME = re.compile(r"^snapshot-(\d+)-(\d+)$")
_CHUNK = 1 << 20
WindowDigest = Callable[[int, int], dict[str, Any]]


def file_sha256(path: Path) -> str:
    """The sha256 hex digest of a file's bytes.

    Args:
        path: the file.
    """
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def bytes_sha256(content: bytes) -> str:
    """The sha256 hex digest of `content` (what `file_sha256` gives once it is written)."""
    return hashlib.sha256(content).hexdigest()


def window_digest(events: pd.DataFrame, start: int, end: int) -> dict[str, Any]:
    """`{"events": n, "sha256": ...}` of the engagement rows with start <= timestamp < end.

    The rows are hashed as (timestamp, user, pin) int64 triples in sorted order, so the digest
    depends on which events the window holds, not on the frame's row order.

    Args:
        events: engagement rows (`InteractionData.engagements()`): timestamp, user, pin columns.
        start: the window's first second.
        end: the window's end (excluded).
    """
    timestamps = events["timestamp"].to_numpy(np.int64)
    mask = (timestamps >= start) & (timestamps < end)
    triples = np.stack(
        [timestamps[mask], events["user"].to_numpy(np.int64)[mask], events["pin"].to_numpy(np.int64)[mask]],
        axis=1,
    )
    triples = triples[np.lexsort(triples.T[::-1])]
    return {"events": len(triples), "sha256": bytes_sha256(np.ascontiguousarray(triples).tobytes())}


def name_window(path: Path) -> tuple[int, int] | None:
    """The (start, end) a snapshot directory's name says (None: a name `save_snapshot` never writes)."""
    match = _NAME.match(path.name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def verify_snapshot(path: Path, manifest: Mapping[str, Any], events: WindowDigest | None) -> str | None:
    """What is wrong with a snapshot whose manifest parsed (None: nothing that can be checked).

    Checks, in order: the window in the directory's name is the manifest's; each file's sha256 is
    the manifest's (`hashes`); the events of the window, re-derived from the job's data by
    `events`, have the manifest's digest (`window_events`). A manifest written before the hashes
    existed has neither: nothing of its files can be checked (`verifiable`).

    Args:
        path: the snapshot's directory.
        manifest: its parsed manifest.
        events: start, end -> `window_digest` of the job's own data (None: not checked).
    """
    window = (int(manifest["window"]["start"]), int(manifest["window"]["end"]))
    named = name_window(path)
    if named is not None and named != window:
        return (
            f"{path / 'manifest.json'} says window {list(window)} but the directory was written for "
            f"{list(named)}"
        )
    hashes = manifest.get("hashes") or {}
    for key, name in manifest["files"].items():
        if key in hashes and file_sha256(path / name) != hashes[key]:
            return f"{path / name} does not match the sha256 its manifest recorded (changed or swapped)"
    recorded = manifest.get("window_events")
    if events is not None and recorded is not None:
        derived = events(*window)
        if derived != recorded:
            return (
                f"{path / 'manifest.json'}: the data's events in its window [{window[0]}, {window[1]}) "
                f"({derived['events']} engagements) are not the {recorded.get('events')} it was trained "
                "on (the window was edited, or the data changed)"
            )
    return None


def verifiable(manifest: Mapping[str, Any]) -> bool:
    """Whether a manifest records its files' hashes (written by this version of ebr-pretrain or later)."""
    return bool(manifest.get("hashes"))
