"""Run directories, and the one job wrapper every entry point shares.

A run directory holds:

- ``.hydra/`` (``config.yaml``, ``overrides.yaml``, ``hydra.yaml``), written by Hydra at job start;
- ``run.json``: the resolved config the results came from, its hash and the job's arm;
- ``metrics.json``: flat ``{metric: number}``, written last: it marks the job finished;
- ``error.txt``: the traceback, instead of ``metrics.json``, when the job failed;
- ``.outcome.json``: what the latest invocation did (finished, skipped, failed, refused),
  read by the sweep tally.

Every file is written to a temporary name and renamed, so a reader never sees half a file.
This module imports nothing of ebr and no torch: the report reads run directories through it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

log = logging.getLogger("ebr.runs")

METRICS_FILE = "metrics.json"
ERROR_FILE = "error.txt"
RECORD_FILE = "run.json"
OUTCOME_FILE = ".outcome.json"
MODEL_FILE = "model.pt"
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
    "paths",
    "report",
    "trainer.enable_progress_bar",
    "trainer.default_root_dir",
)
# Outcomes of one invocation of a job.
FINISHED, SKIPPED, FAILED, REFUSED = "finished", "skipped", "failed", "refused"
SINGLE_ARM = "single"


# ----------------------------------------------------------------------------- atomic files


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to a temporary file beside `path`, then rename it over `path`.

    Args:
        path: the target file; its directory must exist.
        data: the content.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """`write_bytes_atomic` for UTF-8 text."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> Path:
    """`write_bytes_atomic` for JSON (indented, keys in the given order, a final newline)."""
    return write_text_atomic(path, json.dumps(data, indent=2) + "\n")


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
    return (Path(run_dir) / METRICS_FILE).is_file()


def record_failure(run_dir: Path, traceback_text: str) -> Path:
    return write_text_atomic(Path(run_dir) / ERROR_FILE, traceback_text)


# ----------------------------------------------------------------------------- arms


def parse_override(text: str) -> tuple[str, str]:
    """One Hydra override string as (key, value): ``+a.b=1`` -> ("a.b", "1"); ``~a`` -> ("~a", "<deleted>").

    Raises:
        ValueError: when the text is not of the form key=value.
    """
    if text.startswith("~"):
        return text, "<deleted>"
    key, sep, value = text.partition("=")
    if not sep or not key.lstrip("+"):
        raise ValueError(f"override {text!r} is not of the form key=value")
    return key.lstrip("+"), value


@dataclass(frozen=True)
class Arm:
    """What a job of a sweep varies: its overrides less the keys that name no compared setting.

    The definition is Hydra's ``override_dirname`` with ``hydra.job.config.override_dirname.
    exclude_keys`` (set in ``conf/train.yaml``): the wandb job type is the same string.

    Args:
        label: ``key=value`` pairs sorted by key and joined by commas; "single" when empty.
        values: key -> value of those overrides.
    """

    label: str
    values: dict[str, str]


def arm_from_overrides(overrides: list[str], exclude_keys: list[str] | tuple[str, ...]) -> Arm:
    """The arm of a job from its override strings, built exactly as Hydra builds ``override_dirname``:
    the override lines as written (a ``+`` kept) whose key is not excluded, sorted as text, joined by
    commas.

    Args:
        overrides: the job's task overrides (``.hydra/overrides.yaml``).
        exclude_keys: keys left out (``hydra.job.config.override_dirname.exclude_keys``).
    """
    excluded = set(exclude_keys)
    kept = sorted(text for text in overrides if _override_key(text) not in excluded)
    values = dict(parse_override(text) for text in kept)
    return Arm(",".join(kept) or SINGLE_ARM, values)


def _override_key(text: str) -> str:
    """The key or group an override sets (Hydra's `key_or_group`): no ``+``, ``++`` or ``~`` prefix."""
    return text.lstrip("+~").partition("=")[0]


def read_arm(run_dir: str | os.PathLike[str]) -> Arm:
    """The arm of a finished or unfinished job directory, from its ``.hydra/`` files.

    The exclusions are the ones the job ran with (``.hydra/hydra.yaml``), and always the seed:
    the seed pairs runs, it never names an arm (sweeps from before the exclusions were configured
    have none in their ``hydra.yaml``).

    Raises:
        ValueError: naming the file, when ``.hydra/overrides.yaml`` or ``hydra.yaml`` is malformed.
    """
    directory = Path(run_dir)
    overrides = read_yaml(directory / OVERRIDES_FILE, default=[])
    if not isinstance(overrides, list) or not all(isinstance(item, str) for item in overrides):
        raise ValueError(f"{directory / OVERRIDES_FILE}: expected a YAML list of override strings")
    exclude: list[str] = ["seed"]
    hydra_path = directory / HYDRA_FILE
    if hydra_path.is_file():
        node = read_yaml(hydra_path, default={})
        found = dig(node, ("hydra", "job", "config", "override_dirname", "exclude_keys"))
        if found is not None:
            if not isinstance(found, list):
                raise ValueError(f"{hydra_path}: job.config.override_dirname.exclude_keys is not a list")
            exclude = ["seed", *(str(key) for key in found)]
    try:
        return arm_from_overrides(overrides, exclude)
    except ValueError as exc:
        raise ValueError(f"{directory / OVERRIDES_FILE}: {exc}") from exc


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


# ----------------------------------------------------------------------------- config identity


def flatten_config(container: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted keys (lists stay values).

    Args:
        container: a resolved config as plain Python (``OmegaConf.to_container(..., resolve=True)``).
        prefix: prepended to every key.
    """
    flat: dict[str, Any] = {}
    for key, value in container.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_config(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def result_config(container: Mapping[str, Any]) -> dict[str, Any]:
    """The flat config less the keys that cannot change results (`RESULT_NEUTRAL_KEYS`)."""

    def neutral(key: str) -> bool:
        return any(key == k or key.startswith(f"{k}.") for k in RESULT_NEUTRAL_KEYS)

    return {key: value for key, value in flatten_config(container).items() if not neutral(key)}


def config_hash(flat: Mapping[str, Any]) -> str:
    """A stable hash of a flat config (sha256 of its canonical JSON, first 16 hex digits)."""
    text = json.dumps(dict(flat), sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def config_differences(recorded: Mapping[str, Any], requested: Mapping[str, Any]) -> list[str]:
    """Human-readable ``key: old -> new`` lines for every key whose value differs (or is new/gone)."""
    lines = []
    for key in sorted(set(recorded) | set(requested)):
        old, new = recorded.get(key, "<absent>"), requested.get(key, "<absent>")
        if old != new:
            lines.append(f"{key}: {old!r} -> {new!r}")
    return lines


# ----------------------------------------------------------------------------- ranks


def process_rank() -> int:
    """This process's global rank under torchrun (``RANK``), 0 otherwise."""
    return int(os.environ.get("RANK", "0"))


def is_rank_zero() -> bool:
    return process_rank() == 0


# ----------------------------------------------------------------------------- the job wrapper


class JobLoggers(Protocol):
    """What a job's loggers do for the wrapper (built from the ``logger`` config group)."""

    @property
    def lightning(self) -> list[Any]:
        """The Lightning loggers the trainer writes training curves to."""
        ...

    def log_config(self, config: dict[str, Any]) -> None: ...

    def log_final(self, metrics: Mapping[str, float]) -> None: ...

    def finish(self, success: bool) -> None: ...


class NoLoggers:
    """Loggers of a rank other than 0, and of a job run with ``logger=none``: nothing is logged."""

    lightning: list[Any] = []  # noqa: RUF012  (never mutated: a class-wide empty list)

    def log_config(self, config: dict[str, Any]) -> None:
        return None

    def log_final(self, metrics: Mapping[str, float]) -> None:
        return None

    def finish(self, success: bool) -> None:
        return None


class StaleRunError(RuntimeError):
    """A finished job was asked to run with another config (the message names the differing keys)."""


@dataclass(frozen=True)
class JobSpec:
    """One invocation of a job, as the entry point hands it to `run_in_directory`.

    Args:
        run_dir: the job's directory (Hydra's output directory).
        config: the job's resolved config as plain Python (what the loggers record).
        identity: the config that decides the results, as plain Python: the config with every
            value resolved except references to other keys (those keys are recorded themselves);
            `config` when None. Keys in `RESULT_NEUTRAL_KEYS` are left out of it here.
        force: re-run even when the directory holds the results of the same config.
        multirun: part of a sweep: a failure is recorded and the sweep goes on.
    """

    run_dir: Path
    config: dict[str, Any]
    identity: dict[str, Any] | None = None
    force: bool = False
    multirun: bool = False


@dataclass(frozen=True)
class JobResult:
    """What a job computed.

    Args:
        metrics: flat metric name -> number (``metrics.json``).
        info: what the report needs to know besides, e.g. {"data_name", "data_source"} (the data
            set actually read); written into ``run.json``.
    """

    metrics: dict[str, float]
    info: dict[str, Any] = field(default_factory=dict)


JobFunction = Callable[[JobLoggers], JobResult]
# shown on the console when a job ends
HEADLINE_METRICS = ("recall@100", "ndcg@100", "popularity/recall@100", "sim/engaged_sessions", "sim/repins")


def run_in_directory(spec: JobSpec, job: JobFunction, make_loggers: Callable[[], JobLoggers]) -> str:
    """Run a job into its directory: skip, refuse or run it, and record what happened.

    - Finished with the same config (hash of `result_config`): skipped.
    - Finished with another config: refused (`StaleRunError` naming the differing keys) unless
      `force`; the ``.hydra/`` files Hydra rewrote for this invocation are put back, so the
      old results keep the config they came from.
    - Otherwise run: ``run.json`` then ``metrics.json`` on success, ``error.txt`` on failure.

    Only rank 0 writes files and logs; other ranks run the job with `NoLoggers`.

    Args:
        spec: the invocation.
        job: computes the metrics, logging training curves through the loggers it is given; the
            wrapper logs the final metrics.
        make_loggers: builds the job's loggers (called on rank 0 only, after the skip check).

    Returns:
        The outcome: "finished", "skipped" (single runs and sweeps alike); a failed job returns
        "failed" in a sweep and raises otherwise; a refused one raises `StaleRunError` outside a
        sweep and returns "refused" in one.
    """
    run_dir = spec.run_dir
    requested = result_config(spec.config if spec.identity is None else spec.identity)
    rank_zero = is_rank_zero()
    if is_finished(run_dir) and not spec.force:
        outcome = _check_finished(run_dir, requested, spec, rank_zero)
        if outcome is not None:
            return outcome
    if rank_zero:
        (run_dir / ERROR_FILE).unlink(missing_ok=True)
    loggers: JobLoggers = NoLoggers()
    started = time.time()
    try:
        if rank_zero:
            loggers = make_loggers()
            loggers.log_config(spec.config)
        result = job(loggers)
        if rank_zero:
            loggers.log_final(result.metrics)
            _write_record(run_dir, requested, result.info)
            write_metrics(run_dir, result.metrics)
    except Exception as exc:
        text = traceback.format_exc()
        if rank_zero:
            record_failure(run_dir, text)
            _write_outcome(run_dir, FAILED, started, _first_line(exc))
            loggers.finish(success=False)
        log.error("job failed; traceback in %s\n%s", run_dir / ERROR_FILE, text)
        if spec.multirun:
            return FAILED
        raise
    if rank_zero:
        loggers.finish(success=True)
        _write_outcome(run_dir, FINISHED, started)
        headline = {k: round(result.metrics[k], 4) for k in HEADLINE_METRICS if k in result.metrics}
        log.info("metrics written to %s; headline: %s", run_dir / METRICS_FILE, headline)
    return FINISHED


def _first_line(exc: BaseException) -> str:
    """The exception's type and the first line of its message (Hydra wraps the cause in more lines)."""
    cause = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0] if lines else ''}"


def _check_finished(run_dir: Path, requested: dict[str, Any], spec: JobSpec, rank_zero: bool) -> str | None:
    """The outcome for a directory that already holds metrics.json, or None to run the job."""
    record = read_record(run_dir)
    if record is None:
        # finished before run.json existed: its config cannot be checked, so it is not trusted
        message = (
            f"{run_dir} holds {METRICS_FILE} without {RECORD_FILE}, so the config its results came "
            "from is unknown: re-run with force=true (or use another output directory)"
        )
        return _refuse(run_dir, message, spec, rank_zero, record)
    differences = config_differences(record["config"], requested)
    if not differences:
        log.info("%s already holds the results of this config: skipping (force=true re-runs it)", run_dir)
        if rank_zero:
            _write_outcome(run_dir, SKIPPED, time.time())
        return SKIPPED
    shown = "\n  ".join(differences[:20]) + ("\n  ..." if len(differences) > 20 else "")
    message = (
        f"{run_dir} holds results of another config; the requested one differs in "
        f"{len(differences)} key(s):\n  {shown}\n"
        "Re-run with force=true to replace those results, or choose another hydra.sweep.dir / hydra.run.dir."
    )
    return _refuse(run_dir, message, spec, rank_zero, record)


def _refuse(
    run_dir: Path, message: str, spec: JobSpec, rank_zero: bool, record: dict[str, Any] | None
) -> str:
    if rank_zero:
        if record is not None:
            # Hydra rewrote .hydra/ for this invocation: put back the files the results came from
            for name, text in record.get("hydra_files", {}).items():
                write_text_atomic(run_dir / HYDRA_DIR / name, text)
        _write_outcome(run_dir, REFUSED, time.time(), message.splitlines()[0])
    log.error("%s", message)
    if spec.multirun:
        return REFUSED
    raise StaleRunError(message)


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


def _write_record(run_dir: Path, requested: dict[str, Any], info: dict[str, Any]) -> None:
    hydra_files = {}
    for name in ("config.yaml", "overrides.yaml", "hydra.yaml"):
        path = run_dir / HYDRA_DIR / name
        if path.is_file():
            hydra_files[name] = path.read_text(encoding="utf-8")
    record = {
        "config_hash": config_hash(requested),
        "arm": read_arm(run_dir).label if (run_dir / OVERRIDES_FILE).is_file() else SINGLE_ARM,
        "config": requested,
        "info": info,
        "hydra_files": hydra_files,
    }
    write_json_atomic(run_dir / RECORD_FILE, record)


def _write_outcome(run_dir: Path, status: str, started: float, message: str = "") -> None:
    record = {"status": status, "started": started, "ended": time.time(), "message": message}
    write_json_atomic(run_dir / OUTCOME_FILE, record)


# ----------------------------------------------------------------------------- sweep tally


@dataclass(frozen=True)
class Tally:
    """What the jobs of one sweep invocation did.

    Args:
        counts: outcome -> number of jobs ("finished", "skipped", "failed", "refused", "no outcome").
        problems: "job: message" lines for the jobs that did not finish or skip.
    """

    counts: dict[str, int]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return all(self.counts.get(status, 0) == 0 for status in (FAILED, REFUSED, "no outcome"))

    def summary(self) -> str:
        order = (FINISHED, SKIPPED, FAILED, REFUSED, "no outcome")
        shown = [status for status in order if status in self.counts]
        counts = ", ".join(f"{self.counts[status]} {status}" for status in shown)
        return "sweep: " + (counts or "no jobs")


def tally_sweep(sweep_dir: str | os.PathLike[str], since: float) -> Tally:
    """Count the outcomes of the jobs of a sweep directory that ran since `since` (a time.time()).

    A job counts when Hydra wrote its ``.hydra/overrides.yaml`` at or after `since`; a job that
    counts but left no outcome (killed, or failed before the wrapper ran) is "no outcome".
    """
    counts: dict[str, int] = {}
    problems: list[str] = []
    directory = Path(sweep_dir)
    children = sorted(directory.iterdir()) if directory.is_dir() else []
    for child in children:
        overrides = child / OVERRIDES_FILE
        if not overrides.is_file() or overrides.stat().st_mtime < since - 1:
            continue
        outcome_path = child / OUTCOME_FILE
        status, message = "no outcome", "the job left no outcome (killed, or failed before it started)"
        if outcome_path.is_file():
            try:
                outcome = json.loads(outcome_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                outcome = {}
            if float(outcome.get("ended", 0)) >= since - 1:
                status, message = str(outcome.get("status")), str(outcome.get("message", ""))
        counts[status] = counts.get(status, 0) + 1
        if status not in (FINISHED, SKIPPED):
            problems.append(f"{child.name}: {status}: {message}")
    return Tally(counts, problems)
