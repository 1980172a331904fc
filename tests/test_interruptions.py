"""Issue 32, cases 2 and 8: a signal ends a job as failed; a damaged metrics.json marks nothing finished.

Case 2 runs real jobs in a subprocess and sends them real signals once they train (polled for a file
or a log line, with a deadline): SIGTERM (a cluster's preemption) and SIGINT (Ctrl-C) give exit
128 + signal, an error.txt and outcome naming the signal, no metrics.json, and a sweep that runs no
further job; with checkpoints on, the signal's step is saved and the same command resumes from it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from jobs import REPO, job_env, module_command, run_module

from ebr.runs import (
    FAILED,
    METRICS_FILE,
    OUTCOME_FILE,
    JobInterrupted,
    JobResult,
    JobSpec,
    NoLoggers,
    is_finished,
    metrics_damage,
    run_in_directory,
)
from ebr.runs.signals import InterruptGuard
from ebr.training.checkpoint import checkpoint_path

TINY = ["data=synthetic_tiny", "logger=none", "trainer.enable_progress_bar=false"]
DEADLINE_S = 120


def _start(module: str, args: list[str], log: Path) -> subprocess.Popen:
    handle = log.open("w")
    return subprocess.Popen(
        module_command(module, args), cwd=REPO, env=job_env(), stdout=handle, stderr=handle
    )


def _signal_when(process: subprocess.Popen, ready: Callable[[], bool], signum: int) -> int:
    """Send `signum` once `ready()` holds (the job trains); the process's exit code."""
    deadline = time.monotonic() + DEADLINE_S
    while not ready() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if process.poll() is not None:
        raise AssertionError(f"the job ended (exit {process.returncode}) before it was signalled")
    assert ready(), f"the job did not start training within {DEADLINE_S} s"
    process.send_signal(signum)
    try:
        return process.wait(timeout=DEADLINE_S)
    finally:
        if process.poll() is None:
            process.kill()


def _log_has(path: Path, text: str) -> Callable[[], bool]:
    return lambda: path.is_file() and text in path.read_text(errors="replace")


def _assert_failed_by(run_dir: Path, name: str) -> None:
    assert not (run_dir / METRICS_FILE).exists()
    assert name in (run_dir / "error.txt").read_text()
    outcome = json.loads((run_dir / OUTCOME_FILE).read_text())
    assert outcome["status"] == FAILED
    assert name in outcome["message"]


def test_sigterm_ends_a_single_run_failed_with_exit_143_and_the_rerun_resumes(tmp_path) -> None:
    run_dir = tmp_path / "run"
    args = [*TINY, "train.checkpoint_every_n_steps=3", f"hydra.run.dir={run_dir}"]
    process = _start("ebr.train", args, tmp_path / "run.log")
    # the first periodic checkpoint (step 3) is in place: the job is training
    code = _signal_when(process, checkpoint_path(run_dir).exists, signal.SIGTERM)
    log = (tmp_path / "run.log").read_text(errors="replace")
    assert code == 128 + signal.SIGTERM, log[-3000:]
    _assert_failed_by(run_dir, "SIGTERM")
    assert "ebr-train: interrupted by SIGTERM (signal 15); exit code 143" in log
    # the final checkpoint: the fit stopped at a batch boundary past the periodic one
    saved = torch.load(checkpoint_path(run_dir), map_location="cpu", weights_only=True)
    assert saved["global_step"] >= 3

    rerun = run_module("ebr.train", args, timeout=None)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Restoring states from the checkpoint" in rerun.stdout + rerun.stderr
    assert is_finished(run_dir)
    assert not (run_dir / "error.txt").exists()


def test_a_sweep_stops_at_sigterm_saves_the_step_and_runs_no_further_job(tmp_path) -> None:
    sweep_dir = tmp_path / "sweep"
    # the job sends itself a real SIGTERM after step 4 (tests/signal_callback.py): the step is exact
    signal_at = "+trainer.callbacks=[{_target_: tests.signal_callback.SignalAtStep, step: 4}]"
    args = [
        "-m",
        "seed=0,1",
        *TINY,
        "train.checkpoint_every_n_steps=3",
        signal_at,
        f"hydra.sweep.dir={sweep_dir}",
    ]
    result = run_module("ebr.train", args, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 143, output[-3000:]
    _assert_failed_by(sweep_dir / "0", "SIGTERM")
    assert not (sweep_dir / "1").exists(), "the sweep's second job did not start"
    assert "sweep: 1 failed" in output
    assert "the sweep's remaining jobs were not run" in output
    # a final checkpoint at the signal's step (the periodic one was step 3)
    saved = torch.load(checkpoint_path(sweep_dir / "0"), map_location="cpu", weights_only=True)
    assert saved["global_step"] == 4


def test_sigterm_from_outside_ends_a_sweep_in_its_first_job(tmp_path) -> None:
    sweep_dir = tmp_path / "sweep"
    args = ["-m", "seed=0,1", *TINY, "trainer.max_epochs=50", f"hydra.sweep.dir={sweep_dir}"]
    process = _start("ebr.train", args, tmp_path / "sweep.log")
    code = _signal_when(process, _log_has(sweep_dir / "0" / "train.log", "GPU available"), signal.SIGTERM)
    log = (tmp_path / "sweep.log").read_text(errors="replace")
    assert code == 143, log[-3000:]
    _assert_failed_by(sweep_dir / "0", "SIGTERM")
    assert not (sweep_dir / "1").exists()
    assert "sweep: 1 failed" in log


def test_sigint_ends_a_single_run_failed_with_exit_130(tmp_path) -> None:
    run_dir = tmp_path / "run"
    args = [*TINY, "trainer.max_epochs=50", f"hydra.run.dir={run_dir}"]
    process = _start("ebr.train", args, tmp_path / "run.log")
    code = _signal_when(process, _log_has(run_dir / "train.log", "GPU available"), signal.SIGINT)
    assert code == 128 + signal.SIGINT, (tmp_path / "run.log").read_text(errors="replace")[-3000:]
    _assert_failed_by(run_dir, "SIGINT")


def test_sigterm_ends_pretraining_failed_with_exit_143(tmp_path) -> None:
    run_dir = tmp_path / "pretrain"
    args = [
        "data=synthetic_tiny",
        "data.config.n_days=40",
        "split.train_days=7",
        "logger=none",
        "trainer.max_epochs=50",
        "trainer.enable_progress_bar=false",
        f"pretrain.snapshot.dir={tmp_path / 'snapshots'}",
        f"hydra.run.dir={run_dir}",
    ]
    process = _start("ebr.pretrain", args, tmp_path / "pretrain.log")
    code = _signal_when(process, _log_has(run_dir / "pretrain.log", "GPU available"), signal.SIGTERM)
    assert code == 143, (tmp_path / "pretrain.log").read_text(errors="replace")[-3000:]
    _assert_failed_by(run_dir, "SIGTERM")


def _signal_self(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(1)  # the handler runs before this returns


def test_the_guard_raises_at_once_outside_a_fit_and_restores_the_handlers() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with InterruptGuard(), pytest.raises(JobInterrupted) as info:
        _signal_self(signal.SIGTERM)
    assert info.value.exit_code == 143
    assert str(info.value) == "interrupted by SIGTERM (signal 15)"
    assert signal.getsignal(signal.SIGTERM) is before


def test_an_error_raised_after_a_signal_counts_as_the_signal() -> None:
    """A signal raised inside a library can be replaced by the error its cleanup raises (seen:
    an OmegaConf ConfigKeyError while a config was built): the job still ends by the signal."""
    guard = InterruptGuard()
    assert guard.interruption(ValueError("x")) is None
    guard.received = signal.SIGINT
    interrupted = guard.interruption(ValueError("half-built config"))
    assert interrupted is not None
    assert interrupted.exit_code == 130


def _counting_job(calls: list[int]) -> Callable[[NoLoggers], JobResult]:
    def job(loggers: NoLoggers) -> JobResult:
        calls.append(1)
        return JobResult({"recall@100": 0.5, "ndcg@100": 0.25})

    return job


@pytest.mark.parametrize("damage", ['{"recall@100": 0.5, "ndc', "", "[1, 2]", '{"recall@100": "x"}'])
def test_a_cut_metrics_json_is_not_finished_and_the_rerun_runs_again(tmp_path, caplog, damage: str) -> None:
    """Issue 32, case 8: the same command again runs the job (with a warning naming the file)."""
    run_dir = tmp_path / "job"
    (run_dir / ".hydra").mkdir(parents=True)
    spec = JobSpec(run_dir, {"train": {"dense_lr": 0.001}}, multirun=True)
    calls: list[int] = []
    assert run_in_directory(spec, _counting_job(calls), NoLoggers) == "finished"
    assert run_in_directory(spec, _counting_job(calls), NoLoggers) == "skipped"
    (run_dir / METRICS_FILE).write_text(damage)
    assert not is_finished(run_dir)
    assert str(run_dir / METRICS_FILE) in (metrics_damage(run_dir) or "")
    assert run_in_directory(spec, _counting_job(calls), NoLoggers) == "finished"
    assert calls == [1, 1]
    assert f"{run_dir / METRICS_FILE} is damaged" in caplog.text
    assert "running the job again" in caplog.text
    assert json.loads((run_dir / METRICS_FILE).read_text()) == {"ndcg@100": 0.25, "recall@100": 0.5}
