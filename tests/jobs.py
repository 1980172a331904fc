"""How the suite launches ebr's entry points: the repository root, the environment of a quiet offline
job, a module run in a fresh Python process, and `ebr-train` run in this process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def job_env(**extra: str | None) -> dict[str, str]:
    """This process's environment with wandb offline and silent and Python's warnings off.

    Args:
        extra: variables to set on top; a value of None removes the variable instead.
    """
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", PYTHONWARNINGS="ignore")
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def module_command(module: str, args: list[str]) -> list[str]:
    """The command line `python -m MODULE ARGS` with this interpreter (for Popen's own handling).

    Args:
        module: the module to run, e.g. "ebr.train".
        args: its command-line arguments.
    """
    return [sys.executable, "-m", module, *args]


def run_module(
    module: str,
    args: list[str],
    *,
    cwd: Path = REPO,
    timeout: float | None = 600,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run `python -m MODULE ARGS` to its end; its exit code and its output as text.

    Args:
        module: the module to run, e.g. "ebr.train".
        args: its command-line arguments.
        cwd: the directory it runs in.
        timeout: seconds before it is killed (None: no limit).
        env: its environment; None gives `job_env()`.
    """
    return subprocess.run(
        module_command(module, args),
        cwd=cwd,
        env=job_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def train_in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str]
) -> tuple[int, str]:
    """Run `ebr-train ARGS` through its console script's `main` in this process.

    Args:
        monkeypatch: the test's fixture, which sets `sys.argv` for the call.
        capsys: the test's fixture, which captures what the job prints.
        args: the command-line arguments.

    Returns:
        The exit code (1 for an exit without an integer code) and everything printed, stdout then stderr.
    """
    from ebr import train  # imported here: the tests that launch subprocesses need none of it

    monkeypatch.setattr(sys, "argv", ["ebr-train", *args])
    code = 0
    try:
        train.main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out + captured.err
