"""The one job wrapper every entry point shares: skip, refuse, run, record, and the rank-0 guard."""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Protocol

from ebr.runs.arms import read_arm
from ebr.runs.code import CODE_KEY, code_refusal, current_code_identity
from ebr.runs.dashboard import info_columns, run_labels
from ebr.runs.files import (
    ERROR_FILE,
    FAILED,
    FINISHED,
    HYDRA_DIR,
    METRICS_FILE,
    OUTCOME_FILE,
    OVERRIDES_FILE,
    RECORD_FILE,
    REFUSED,
    SINGLE_ARM,
    SKIPPED,
    is_finished,
    metrics_damage,
    read_record,
    record_failure,
    write_json_atomic,
    write_metrics,
    write_text_atomic,
)
from ebr.runs.identity import config_differences, config_hash, result_config
from ebr.runs.signals import InterruptGuard

log = logging.getLogger("ebr.runs")


def process_rank() -> int:
    """This process's global rank under torchrun (``RANK``), 0 otherwise."""
    return int(os.environ.get("RANK", "0"))


def is_rank_zero() -> bool:
    return process_rank() == 0


class JobLoggers(Protocol):
    """What a job's loggers do for the wrapper (built from the ``logger`` config group)."""

    @property
    def lightning(self) -> list[Any]:
        """The Lightning loggers the trainer writes training curves to."""
        ...

    def log_config(self, config: dict[str, Any]) -> None: ...

    def log_labels(self, columns: Mapping[str, Any], tags: Sequence[str] = ()) -> None:
        """Top-level config columns and tags a dashboard slices runs by (ebr.runs.dashboard)."""
        ...

    def log_final(self, metrics: Mapping[str, float]) -> None: ...

    def finish(self, success: bool) -> None: ...


class NoLoggers:
    """Loggers of a rank other than 0, and of a job run with ``logger=none``: nothing is logged."""

    lightning: list[Any] = []  # noqa: RUF012  (never mutated: a class-wide empty list)

    def log_config(self, config: dict[str, Any]) -> None:
        return None

    def log_labels(self, columns: Mapping[str, Any], tags: Sequence[str] = ()) -> None:
        return None

    def log_final(self, metrics: Mapping[str, float]) -> None:
        return None

    def finish(self, success: bool) -> None:
        return None


class StaleRunError(RuntimeError):
    """A finished job was asked to run with another config (the message names the differing keys)
    or by other code (the message names both commits)."""


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


def run_in_directory(
    spec: JobSpec,
    job: JobFunction,
    make_loggers: Callable[[], JobLoggers],
    precheck: Callable[[], None] | None = None,
) -> str:
    """Run a job into its directory: skip, refuse or run it, and record what happened.

    - Finished with the same config (hash of `result_config`) by the same code (ebr.runs.code:
      commit, uncommitted diff, versions): skipped.
    - Finished with another config, or by other code (or recorded without a code identity):
      refused (`StaleRunError` naming the differing keys, or both commits) unless `force`; the
      ``.hydra/`` files Hydra rewrote for this invocation are put back, so the old results keep
      the config they came from.
    - Otherwise run: ``run.json`` then ``metrics.json`` on success, ``error.txt`` on failure.
    - SIGTERM or SIGINT while it runs (ebr.runs.signals): a failure naming the signal, then
      `JobInterrupted` is raised, in a sweep too (no further job should start).

    A ``metrics.json`` that does not parse marks nothing finished: it is removed and the job runs.

    Only rank 0 writes files and logs; other ranks run the job with `NoLoggers`.

    Args:
        spec: the invocation.
        job: computes the metrics, logging training curves through the loggers it is given; the
            wrapper logs the final metrics.
        make_loggers: builds the job's loggers (called on rank 0 only, after the skip check).
        precheck: validates the job before any work (before the loggers are built); what it
            raises is recorded as the job's failure.

    Returns:
        The outcome: "finished", "skipped" (single runs and sweeps alike); a failed job returns
        "failed" in a sweep and raises otherwise; a refused one raises `StaleRunError` outside a
        sweep and returns "refused" in one.
    """
    with InterruptGuard() as guard:
        return _run_guarded(spec, job, make_loggers, precheck, guard)


def _run_guarded(
    spec: JobSpec,
    job: JobFunction,
    make_loggers: Callable[[], JobLoggers],
    precheck: Callable[[], None] | None,
    guard: InterruptGuard,
) -> str:
    """`run_in_directory` while `guard` turns signals into `JobInterrupted`."""
    run_dir = spec.run_dir
    requested = result_config(spec.config if spec.identity is None else spec.identity)
    rank_zero = is_rank_zero()
    # cached now, before the job runs: the code this process loaded, not edits made while it ran
    current_code_identity()
    if (run_dir / METRICS_FILE).is_file() and not spec.force:
        outcome = _check_finished(run_dir, requested, spec, rank_zero)
        if outcome is not None:
            return outcome
    if rank_zero:
        (run_dir / ERROR_FILE).unlink(missing_ok=True)
    loggers: JobLoggers = NoLoggers()
    started = time.time()
    try:
        if precheck is not None:
            precheck()
        if rank_zero:
            loggers = make_loggers()
            loggers.log_config(spec.config)
            labels = run_labels(run_dir, spec.config)
            loggers.log_labels(labels.columns, labels.tags)
        result = job(loggers)
        guard.check()  # a signal the fit deferred to a next batch that never came
        if rank_zero:
            loggers.log_labels(info_columns(result.info))
            loggers.log_final(result.metrics)
            _write_record(run_dir, requested, result.info)
            write_metrics(run_dir, result.metrics)
    except Exception as exc:
        if guard.received is not None:  # a library's cleanup can replace the signal's exception
            _end_interrupted(guard, exc, run_dir, started, loggers)
        text = traceback.format_exc()
        if rank_zero:
            try:
                record_failure(run_dir, text)
                _write_outcome(run_dir, FAILED, started, first_line(exc))
            except OSError as write_error:  # a full disk or a read-only directory: say so, keep the cause
                log.error("could not record the failure in %s: %s", run_dir, write_error)
            try:
                loggers.finish(success=False)
            except Exception as finish_error:
                log.error("the loggers failed while closing: %s", error_text(finish_error))
        # once, the useful line first: the error itself, then where its traceback is kept
        if rank_zero:
            log.error("job failed: %s\n  (traceback in %s)", error_text(exc), run_dir / ERROR_FILE)
        else:
            log.error("job failed on rank %d: %s\n%s", process_rank(), error_text(exc), text)
        if spec.multirun:
            return FAILED
        raise
    except BaseException as exc:
        _end_interrupted(guard, exc, run_dir, started, loggers)
    if rank_zero:
        loggers.finish(success=True)
        _write_outcome(run_dir, FINISHED, started)
        log.info("%s", headline_table(result.metrics, run_dir / METRICS_FILE))
    return FINISHED


def headline_table(metrics: Mapping[str, float], path: Path) -> str:
    """The short table a finished job prints: its headline metrics, and where all of them are."""
    shown = [(name, metrics[name]) for name in HEADLINE_METRICS if name in metrics]
    width = max([len(name) for name, _ in shown] + [len("metric")])
    lines = [f"job finished: {len(metrics)} metrics in {path}"]
    if shown:
        lines += [f"  {'metric':<{width}}  value", f"  {'-' * width}  {'-' * 10}"]
        lines += [f"  {name:<{width}}  {value:.4g}" for name, value in shown]
    return "\n".join(lines)


def unwrapped(exc: BaseException) -> BaseException:
    """The error itself, not Hydra's wrappers of it (InstantiationException, ...).

    Args:
        exc: an exception, possibly raised by Hydra around the constructor's own error.
    """
    while type(exc).__module__.startswith("hydra") and exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def error_text(exc: BaseException) -> str:
    """The exception's type and whole message, without Hydra's wrappers of it."""
    cause = unwrapped(exc)
    return f"{type(cause).__name__}: {str(cause).strip()}"


def first_line(exc: BaseException) -> str:
    """The exception's type and the first line of its message (Hydra wraps the cause in more lines)."""
    cause = unwrapped(exc)
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0] if lines else ''}"


def _check_finished(run_dir: Path, requested: dict[str, Any], spec: JobSpec, rank_zero: bool) -> str | None:
    """The outcome for a directory that already holds metrics.json, or None to run the job."""
    if not is_finished(run_dir):
        _discard_damaged_metrics(run_dir, rank_zero)
        return None
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
        other_code = code_refusal(run_dir, record.get(CODE_KEY))
        if other_code is not None:
            return _refuse(run_dir, other_code, spec, rank_zero, record)
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
        CODE_KEY: current_code_identity(),
        "info": info,
        "hydra_files": hydra_files,
    }
    write_json_atomic(run_dir / RECORD_FILE, record)


def _write_outcome(run_dir: Path, status: str, started: float, message: str = "") -> None:
    record = {"status": status, "started": started, "ended": time.time(), "message": message}
    write_json_atomic(run_dir / OUTCOME_FILE, record)


def _end_interrupted(
    guard: InterruptGuard, exc: BaseException, run_dir: Path, started: float, loggers: JobLoggers
) -> NoReturn:
    """Re-raise `exc` unless a signal ended the job; then record the job as failed, error.txt and
    the outcome naming the signal, and raise `JobInterrupted` (the process exits 128 + signal
    number and a sweep runs no further job: ebr.app)."""
    interrupted = guard.interruption(exc)
    if interrupted is None:
        raise exc
    message = f"job {interrupted}"
    if is_rank_zero():
        try:
            record_failure(run_dir, message + "\n")
            _write_outcome(run_dir, FAILED, started, message)
        except OSError as write_error:
            log.error("could not record the interruption in %s: %s", run_dir, write_error)
        try:
            loggers.finish(success=False)
        except Exception as finish_error:
            log.error("the loggers failed while closing: %s", error_text(finish_error))
    log.error("%s; recorded in %s", message, run_dir / ERROR_FILE)
    if interrupted is exc:
        raise exc
    raise interrupted from exc


def _discard_damaged_metrics(run_dir: Path, rank_zero: bool) -> None:
    """A metrics.json that does not parse (a job cut while it was copied, a full disk) marks
    nothing finished: say so and remove it, so the job runs again."""
    damage = metrics_damage(run_dir)
    if damage is None:
        return
    log.warning("%s: running the job again", damage)
    if rank_zero:
        (run_dir / METRICS_FILE).unlink(missing_ok=True)
