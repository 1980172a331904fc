"""Run-directory conventions shared by the entry point: completion markers and failure records.

`metrics.json` marks a finished job; `error.txt` a failed one. Both are written to a
temporary name and renamed, so a reader never sees a half-written file.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

METRICS_FILE = "metrics.json"
ERROR_FILE = "error.txt"


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_metrics(run_dir: Path, metrics: dict[str, float]) -> Path:
    """Write metrics.json (flat name -> number), refusing NaN or infinite values."""
    bad = sorted(name for name, value in metrics.items() if not math.isfinite(float(value)))
    if bad:
        raise ValueError(f"non-finite metric values, metrics.json not written: {bad}")
    path = run_dir / METRICS_FILE
    clean = {name: float(value) for name, value in sorted(metrics.items())}
    write_text_atomic(path, json.dumps(clean, indent=2) + "\n")
    return path


def read_metrics(run_dir: Path) -> dict[str, float]:
    return json.loads((run_dir / METRICS_FILE).read_text())


def is_finished(run_dir: Path) -> bool:
    return (run_dir / METRICS_FILE).is_file()


def record_failure(run_dir: Path, traceback_text: str) -> Path:
    path = run_dir / ERROR_FILE
    write_text_atomic(path, traceback_text)
    return path
