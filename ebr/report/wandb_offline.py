"""Offline wandb runs of a sweep: where they are, and what one recorded (config, tags, summary).

An offline run is a directory ``offline-run-<time>-<id>`` under a job's ``wandb/`` (the job's run)
or the sweep's ``wandb/`` (``ebr-report --wandb``'s report run). Its records are in
``run-<id>.wandb``: wandb's append-only log, LevelDB's log format (32 KiB blocks of records, each
with a CRC-32 of its type and data, a record split over blocks as first/middle/last pieces) after
a 7-byte header, each record a ``wandb_internal_pb2.Record`` protobuf. This wandb release ships no
reader of that file; `read_offline_run` reads it with wandb's own protobuf definitions.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OFFLINE_PREFIX = "offline-run-"
WANDB_DIR = "wandb"
_MAGIC = b":W&B"
_HEADER_SIZE = 7
_BLOCK_SIZE = 32 * 1024
_RECORD_HEADER = struct.Struct("<IHB")  # CRC-32, length, type
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


class OfflineRunError(ValueError):
    """An offline run directory or its log that cannot be read (the message names the file)."""


@dataclass
class OfflineRun:
    """What an offline run recorded, as the server would hold it after ``wandb sync``.

    Args:
        path: the offline run directory.
        run_id: wandb's run id.
        project: the run's project.
        group: the run's group.
        job_type: the run's job type.
        tags: the run's tags (the latest run record's).
        config: config key -> value (every update applied in order).
        summary: summary key -> value (the last value of each).
        history_keys: every key logged with ``wandb.log`` / a Lightning logger.
        exit_code: the exit code the run finished with, None when it did not finish.
    """

    path: Path
    run_id: str = ""
    project: str = ""
    group: str = ""
    job_type: str = ""
    tags: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history_keys: set[str] = field(default_factory=set)
    exit_code: int | None = None


def log_file(run_dir: Path) -> Path:
    """The ``run-<id>.wandb`` log of an offline run directory.

    Raises:
        OfflineRunError: when the directory holds none or several.
    """
    found = sorted(Path(run_dir).glob("run-*.wandb"))
    if len(found) != 1:
        raise OfflineRunError(
            f"{run_dir}: expected one run-*.wandb log of an offline wandb run, found {len(found)}"
        )
    return found[0]


def read_records(path: Path) -> list[bytes]:
    """The records of a ``.wandb`` log, each the bytes of one protobuf ``Record``.

    A log cut short (a run killed while writing) ends at its last whole record.

    Raises:
        OfflineRunError: naming the file, when its header or a record's checksum is wrong.
    """
    raw = Path(path).read_bytes()
    if raw[: len(_MAGIC)] != _MAGIC or len(raw) < _HEADER_SIZE:
        raise OfflineRunError(f"{path}: not a wandb run log (no {_MAGIC!r} header)")
    records: list[bytes] = []
    pending: bytes | None = None
    position = _HEADER_SIZE
    while position + _RECORD_HEADER.size <= len(raw):
        left_in_block = _BLOCK_SIZE - position % _BLOCK_SIZE
        if left_in_block < _RECORD_HEADER.size:
            position += left_in_block  # the block's zero padding
            continue
        checksum, length, kind = _RECORD_HEADER.unpack_from(raw, position)
        start = position + _RECORD_HEADER.size
        data = raw[start : start + length]
        if kind == 0 and length == 0:
            break  # preallocated, never written
        if len(data) < length:
            break  # cut short
        if zlib.crc32(bytes([kind]) + data) & 0xFFFFFFFF != checksum:
            raise OfflineRunError(f"{path}: record at byte {position} fails its checksum")
        position = start + length
        if kind == _FULL:
            records.append(data)
        elif kind == _FIRST:
            pending = data
        elif kind == _MIDDLE and pending is not None:
            pending += data
        elif kind == _LAST and pending is not None:
            records.append(pending + data)
            pending = None
        else:
            raise OfflineRunError(f"{path}: record at byte {position - length} has unknown type {kind}")
    return records


def _item_key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def read_offline_run(run_dir: Path) -> OfflineRun:
    """What an offline run directory recorded: its run records, config, summary and history keys.

    Args:
        run_dir: an ``offline-run-*`` directory.

    Raises:
        OfflineRunError: naming the file, when the log cannot be read.
    """
    from wandb.proto import wandb_internal_pb2

    path = log_file(run_dir)
    run = OfflineRun(path=Path(run_dir))
    for data in read_records(path):
        record = wandb_internal_pb2.Record()
        try:
            record.ParseFromString(data)
        except Exception as exc:  # protobuf's DecodeError
            raise OfflineRunError(f"{path}: a record is not a wandb Record ({exc})") from exc
        kind = record.WhichOneof("record_type")
        if kind == "run":
            body = record.run
            run.run_id, run.project = body.run_id, body.project
            run.group, run.job_type, run.tags = body.run_group, body.job_type, tuple(body.tags)
            _apply(run.config, body.config.update)
        elif kind == "config":
            _apply(run.config, record.config.update)
        elif kind == "summary":
            _apply(run.summary, record.summary.update)
        elif kind == "history":
            run.history_keys.update(_item_key(item) for item in record.history.item)
        elif kind == "exit":
            run.exit_code = int(record.exit.exit_code)
    run.config.pop("_wandb", None)
    return run


def _apply(target: dict[str, Any], items: Any) -> None:
    for item in items:
        target[_item_key(item)] = json.loads(item.value_json)


def latest_offline_run(wandb_dir: Path) -> Path | None:
    """The newest ``offline-run-*`` directory under `wandb_dir` (their names start with the time)."""
    runs = sorted(p for p in Path(wandb_dir).glob(f"{OFFLINE_PREFIX}*") if p.is_dir())
    return runs[-1] if runs else None
