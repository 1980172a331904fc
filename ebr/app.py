"""The Hydra application shell every ebr entry point shares (`ebr-train`, `ebr-pretrain`).

An entry point is a config name plus a job function `(cfg, run_dir, loggers) -> JobResult`;
`run_app` hands the job to the wrapper in ebr.runs (skip, refuse, record, rank-0 guard) and
`main` turns the outcome into the process's exit code. A multirun ends with a tally of what its
jobs did (`SweepTally`, a Hydra callback in `conf/train.yaml`), and exits non-zero when any job
failed or was refused. Under a hyperparameter search (`optimized_metric` set, conf/hparams_search/)
`run_app` returns the job's objective to the sweeper, and failed trials are recorded, not fatal:
the search exits non-zero only when a job was refused or none finished.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, OmegaConf

from ebr.config import register_schemas
from ebr.override_check import unknown_key_message
from ebr.runs import (
    ERROR_FILE,
    FINISHED,
    REFUSED,
    SKIPPED,
    JobInterrupted,
    JobLoggers,
    JobResult,
    JobSpec,
    Tally,
    job_objective,
    run_in_directory,
    tally_sweep,
    unwrapped,
)
from ebr.runs.cluster import adopt_cluster_task
from ebr.runs.console import quiet_console

log = logging.getLogger("ebr")
CONFIG_DIR = Path(__file__).resolve().parent.parent / "conf"

JobFunction = Callable[[DictConfig, Path, JobLoggers], JobResult]


class SweepTally(Callback):
    """Counts what the jobs of a multirun did, prints it, and remembers it for the exit code."""

    last: Tally | None = None
    # whether the last multirun was a hyperparameter search (its failed trials are results)
    search: bool = False
    # the running multirun's directory and start, for the tally of a sweep a signal ended
    running: tuple[str, float] | None = None

    def __init__(self) -> None:
        self.started = time.time()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time()
        SweepTally.last = None
        SweepTally.search = bool(OmegaConf.select(config, "optimized_metric", default=None))
        SweepTally.running = (str(config.hydra.sweep.dir), self.started)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            tally = tally_sweep(config.hydra.sweep.dir, self.started)
        except Exception as exc:
            # Hydra does not stop for a callback's error: record it as a failed tally instead
            tally = Tally({"no outcome": 1}, [f"the sweep's tally failed: {type(exc).__name__}: {exc}"])
        SweepTally.last = tally
        SweepTally.running = None
        lines = [tally.summary(), *(f"  {problem}" for problem in tally.problems)]
        (log.info if tally.ok else log.error)("\n".join(lines))


class TrialFailedError(RuntimeError):
    """A search trial's job failed or was refused: the sweeper records the trial as failed."""


class JobFailedError(CompactHydraException):
    """A single run failed or was refused; the wrapper already printed why, so Hydra prints only this line."""


def identity_config(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain Python with references to other keys left out and everything else resolved.

    A value written `${train}` or `${..dense_lr}` repeats a key that is itself recorded, so leaving
    it out means a changed setting is named once; a value from a resolver (`${oc.env:...}`) is
    resolved, so a changed environment variable still counts.
    """

    def walk(node: DictConfig, raw: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, written in raw.items():
            if _is_key_reference(written):
                continue
            if OmegaConf.is_missing(node, key):
                # a mandatory value left unset: the checks before work name it, inside the wrapper
                out[key] = written
                continue
            value = node[key]
            if isinstance(value, DictConfig) and isinstance(written, dict):
                out[key] = walk(value, written)
            elif isinstance(value, DictConfig | ListConfig):
                out[key] = OmegaConf.to_container(value, resolve=True)
            else:
                out[key] = value
        return out

    return walk(cfg, OmegaConf.to_container(cfg, resolve=False))  # type: ignore[arg-type]


def _is_key_reference(text: object) -> bool:
    return isinstance(text, str) and text.startswith("${") and text.endswith("}") and ":" not in text


def run_app(cfg: DictConfig, job: JobFunction) -> float | None:
    """Run one Hydra job of an entry point through the shared wrapper.

    Args:
        cfg: the job's composed config.
        job: the entry point's job function.

    Returns:
        The job's objective when the config sets `optimized_metric` (the hyperparameter search's
        sweeper reads it: the recorded value for a finished or skipped job); None otherwise.

    Raises:
        SearchConfigError: when `optimized_metric` is set but the job would score the test window.
        TrialFailedError: when `optimized_metric` is set and the job failed or was refused in a
            sweep (Hydra hands the exception to the sweeper, which records a failed trial).
    """
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    # before anything reads the rank: every task of a multi-task cluster job runs this same job
    adopt_cluster_task(run_dir)
    metric = OmegaConf.select(cfg, "optimized_metric", default=None)
    if metric:
        # imported here: plain runs need neither the sweeper plugin nor optuna
        from ebr.search import WINDOW_KEY, check_search_window

        # before any work: a search's objective is never read from the test window
        check_search_window(OmegaConf.select(cfg, WINDOW_KEY, default=None))
    spec = JobSpec(
        run_dir=run_dir,
        config=OmegaConf.to_container(cfg, resolve=True),  # type: ignore[arg-type]
        identity=identity_config(cfg),
        force=bool(cfg.force),
        multirun=hydra_cfg.mode == RunMode.MULTIRUN,
    )
    quiet_console(bool(OmegaConf.select(cfg, "verbose", default=False)))
    try:
        outcome = run_in_directory(
            spec, lambda loggers: job(cfg, run_dir, loggers), lambda: _loggers(cfg), lambda: _validate(cfg)
        )
    except Exception as exc:
        # recorded and printed once by the wrapper: Hydra prints only this line, not the traceback
        where = f"{run_dir / ERROR_FILE}" if (run_dir / ERROR_FILE).is_file() else f"{run_dir}"
        cause = unwrapped(exc)  # Hydra's instantiation wrapper: name the error itself
        raise JobFailedError(f"ebr: the job did not finish ({type(cause).__name__}; see {where})") from exc
    if not metric:
        return None
    if outcome not in (FINISHED, SKIPPED):
        # an exception, not NaN: the Optuna sweeper then tells the trial FAIL (its NaN path
        # raises inside its own error handling and stops the study)
        raise TrialFailedError(f"trial {outcome}: {run_dir} holds no {metric} (see its error.txt)")
    value = job_objective(run_dir, str(metric))
    log.info("objective %s = %s (%s)", metric, value, outcome)
    return value


def _validate(cfg: DictConfig) -> None:
    # imported here: the checks import faiss and the targets, which skipped jobs never need
    from ebr.validation import validate_config

    validate_config(cfg)


def _loggers(cfg: DictConfig) -> JobLoggers:
    return hydra.utils.instantiate(cfg.logger)


def main(config_name: str, hydra_main: Callable[[], Any], argv: Sequence[str] | None = None) -> None:
    """A console script: check override keys, run the Hydra app, exit non-zero when a sweep job failed.

    Args:
        config_name: the primary config (e.g. "train").
        hydra_main: the `@hydra.main`-decorated function of the entry point.
        argv: the command-line arguments (default sys.argv[1:]).
    """
    register_schemas()
    args = list(sys.argv[1:] if argv is None else argv)
    message = unknown_key_message(CONFIG_DIR, config_name, args)
    if message is not None:
        print(f"ebr-{config_name}: {message}", file=sys.stderr)
        raise SystemExit(2)
    SweepTally.last = SweepTally.running = None
    try:
        hydra_main()
    except JobInterrupted as exc:
        raise SystemExit(interrupted_exit(config_name, exc)) from None
    if SweepTally.last is not None and sweep_failed(SweepTally.last, SweepTally.search):
        raise SystemExit(1)


def sweep_failed(tally: Tally, search: bool) -> bool:
    """Whether a multirun's tally makes the process exit non-zero.

    Args:
        tally: what the invocation's jobs did.
        search: the multirun was a hyperparameter search: a failed trial is a result Optuna
            records (a learning rate that diverges), so only a refused job or no finished job fails it.
    """
    if tally.ok:
        return False
    if not search:
        return True
    done = tally.counts.get(FINISHED, 0) + tally.counts.get(SKIPPED, 0)
    return tally.counts.get(REFUSED, 0) > 0 or done == 0


def interrupted_exit(config_name: str, exc: JobInterrupted) -> int:
    """Say that a signal ended the run (and, in a sweep, tally its jobs); the exit code, 128 + signal.

    The wrapper recorded the job as failed; the sweep's remaining jobs are not run, as the
    scheduler that sent SIGTERM (a preemption) or the user who pressed Ctrl-C asked.

    Args:
        config_name: the primary config, naming the command.
        exc: the interruption.
    """
    if SweepTally.running is not None:
        sweep_dir, started = SweepTally.running
        SweepTally.running = None
        tally = tally_sweep(sweep_dir, started)
        SweepTally.last = tally
        lines = [tally.summary(), *(f"  {problem}" for problem in tally.problems)]
        log.error("%s\nthe sweep's remaining jobs were not run", "\n".join(lines))
    print(f"ebr-{config_name}: {exc}; exit code {exc.exit_code}", file=sys.stderr)
    return exc.exit_code
