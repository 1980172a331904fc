"""The files of a run directory and the atomic writers every part of ebr uses.

Every file is written to a temporary name and renamed (`write_atomic`), every directory built at a
temporary name and renamed (`publish_directory`), so a reader never sees half of either. The file
names of a run directory are defined here once; any package of ebr may import them.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

METRICS_FILE = "metrics.json"
# the metrics that are wall-clock measurements: the only ones two runs of one config may differ in
WALL_CLOCK_METRICS = frozenset(
    {
        "train/seconds",
        "train/examples_per_second",
        "eval/seconds",
        "eval/users_per_second",
        "serving/corpus_embed_seconds",
        "serving/index_build_seconds",
        "serving/user_embed_seconds",
        "serving/search_seconds",
        "serving/search_users_per_second",
        "serving/side_by_side_queries_per_second",
        "serving/side_by_side_flat_queries_per_second",
        "serving/side_by_side_vs_flat",
        "serving/side_by_side_vs_flat_min",
    }
)
ERROR_FILE = "error.txt"
RECORD_FILE = "run.json"
OUTCOME_FILE = ".outcome.json"
MODEL_FILE = "model.pt"
# per-epoch training and validation losses of a trained model (ebr.training.history)
HISTORY_FILE = "history.json"
# a multi-process job's sharding plan as placed: each rank's table shards (ebr.training.distributed)
SHARDING_FILE = "sharding.json"
# the resumable checkpoint of a training: CHECKPOINT_DIR/LAST_CHECKPOINT (ebr.training.checkpoint)
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
HYDRA_DIR = ".hydra"
OVERRIDES_FILE = f"{HYDRA_DIR}/overrides.yaml"
CONFIG_FILE = f"{HYDRA_DIR}/config.yaml"
HYDRA_FILE = f"{HYDRA_DIR}/hydra.yaml"

# Config keys that cannot change a job's results: they are left out of its config hash, so
# changing them never makes a finished job stale.
RESULT_NEUTRAL_KEYS = (
    "experiment_name",
    "force",
    "hydra",
    "logger",
    "optimized_metric",
    "paths",
    "report",
    "trainer.enable_progress_bar",
    "trainer.default_root_dir",
    "verbose",
)
# Outcomes of one invocation of a job.
FINISHED, SKIPPED, FAILED, REFUSED = "finished", "skipped", "failed", "refused"
SINGLE_ARM = "single"


def write_atomic(
    path: str | os.PathLike[str], write: Callable[[Path], object], durable: bool = False
) -> Path:
    """Have `write` fill a temporary file beside `path`, then rename it over `path`.

    The one atomic file writer of ebr: a reader sees the old file or the whole new one. The
    temporary is `<name>.tmp` inside a hidden folder of this process (`.<name>.<pid>.tmp/`), so two
    processes never share one, and a writer that records its file name (torch.save names its
    archive after the file) writes the same bytes from any process.

    Args:
        path: the target file; its directory must exist.
        write: writes the content to the path it is given.
        durable: flush the file to disk before the rename (a checkpoint that must survive a crash).
    """
    target = Path(path)
    folder = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp = folder / f"{target.name}.tmp"
    try:
        folder.mkdir(exist_ok=True)
        write(tmp)
        if durable:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return target


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """`write_atomic` for bytes.

    Args:
        path: the target file; its directory must exist.
        data: the content.
    """
    return write_atomic(path, lambda tmp: tmp.write_bytes(data))


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """`write_bytes_atomic` for UTF-8 text."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> Path:
    """`write_bytes_atomic` for JSON (indented, keys in the given order, a final newline)."""
    return write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def publish_directory(
    final: str | os.PathLike[str],
    fill: Callable[[Path], object],
    keep: Callable[[Path], T | None] | None = None,
) -> T | None:
    """Have `fill` build a directory at a temporary name beside `final`, then rename it to `final`.

    The one atomic directory publisher of ebr: a reader sees no directory, an old one or the whole
    new one. A directory already at `final` is replaced (moved aside whole, then removed), unless
    `keep` accepts it: then the new one is dropped and `keep`'s answer returned (a cache entry
    another job published first).

    Args:
        final: the directory to publish; its parent is created.
        fill: writes the directory's content into the (empty) folder it is given.
        keep: asked about a directory found at `final`; a value other than None keeps it.

    Returns:
        None when this call published `final`, else `keep`'s answer.

    Raises:
        OSError: when `final` could not be replaced in three tries (other jobs racing for it).
    """
    target = Path(final)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    try:
        fill(tmp)
        for _ in range(3):
            try:
                os.rename(tmp, target)
                return None
            except OSError:
                if not target.exists():
                    continue  # moved away by a concurrent job between our attempts
                kept = keep(target) if keep is not None else None
                if kept is not None:
                    return kept
                if not remove_directory(target):
                    continue
        raise OSError(f"could not publish the directory {target}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_directory(path: str | os.PathLike[str]) -> bool:
    """Rename a directory aside (`.trash-<name>-<random>`), then delete it: a reader never sees it
    half removed. Returns False when it was gone already.

    Args:
        path: the directory.
    """
    folder = Path(path)
    trash = folder.with_name(f".trash-{folder.name.lstrip('.')}-{uuid.uuid4().hex}")
    try:
        os.rename(folder, trash)
    except FileNotFoundError:
        return False
    shutil.rmtree(trash, ignore_errors=True)
    return True


def write_metrics(run_dir: Path, metrics: Mapping[str, float]) -> Path:
    """Write metrics.json (flat name -> number, sorted), refusing NaN or infinite values.

    Args:
        run_dir: the run directory.
        metrics: metric name -> value.
    """
    bad = sorted(name for name, value in metrics.items() if not math.isfinite(float(value)))
    if bad:
        raise ValueError(f"non-finite metric values, {METRICS_FILE} not written: {bad}")
    clean = {name: float(value) for name, value in sorted(metrics.items())}
    return write_json_atomic(Path(run_dir) / METRICS_FILE, clean)


def read_metrics(run_dir: Path) -> dict[str, float]:
    return json.loads((Path(run_dir) / METRICS_FILE).read_text())


def is_finished(run_dir: Path) -> bool:
    """Whether the run directory holds a metrics.json that parses (`metrics_damage`)."""
    return (Path(run_dir) / METRICS_FILE).is_file() and metrics_damage(run_dir) is None


def metrics_damage(run_dir: Path) -> str | None:
    """What is wrong with a run directory's metrics.json, None when it is whole or absent.

    The file marks a job finished, so it is read, not only found: a cut or overwritten file
    (not JSON, not an object of finite numbers) is damage, named with its path.

    Args:
        run_dir: the run directory.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"{path} is damaged (cannot be read as JSON: {exc})"
    if not isinstance(data, dict):
        return f"{path} is damaged (expected a JSON object metric -> number)"
    bad = [key for key, value in data.items() if not _finite_number(value)]
    if bad:
        return f"{path} is damaged (not finite numbers: {', '.join(sorted(bad)[:5])})"
    return None


def _finite_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def record_failure(run_dir: Path, traceback_text: str) -> Path:
    return write_text_atomic(Path(run_dir) / ERROR_FILE, traceback_text)


def read_yaml(path: Path, default: Any) -> Any:
    """A YAML file's content (`default` when the file is absent or empty).

    Raises:
        ValueError: naming the file, when it is not valid YAML.
    """
    if not path.is_file():
        return default
    try:
        value = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from exc
    return default if value is None else value


def dig(node: Any, keys: tuple[str, ...]) -> Any:
    """`node[k1][k2]...`, or None where a key is missing or a level is not a mapping."""
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def read_record(run_dir: Path) -> dict[str, Any] | None:
    """The ``run.json`` of a run directory, or None when absent.

    Raises:
        ValueError: naming the file, when it is not a JSON object with a "config" mapping.
    """
    path = Path(run_dir) / RECORD_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise ValueError(f"{path}: expected a JSON object with a 'config' mapping")
    return record
