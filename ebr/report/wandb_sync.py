"""Upload a sweep's offline wandb runs in one step: ``ebr-report SWEEP_DIR --wandb-sync``.

What is uploaded: per job directory its newest offline run (the one its ``metrics.json`` came from:
an older one belongs to a failed or forced-over attempt), and the newest report run under
``SWEEP_DIR/wandb`` (``ebr-report --wandb``). The command is ``wandb sync`` of those directories;
without credentials it fails before starting it, naming what is missing, instead of waiting on a
login prompt.
"""

from __future__ import annotations

import netrc
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from ebr.report.wandb_offline import WANDB_DIR, latest_offline_run

DEFAULT_BASE_URL = "https://api.wandb.ai"


class SyncError(RuntimeError):
    """The sweep's runs cannot be synced (no run, no credentials, wandb sync failed)."""


def sweep_run_dirs(sweep_dir: Path, job_dirs: Sequence[Path]) -> list[Path]:
    """The offline run directories to upload: each job's newest, then the newest report run.

    Args:
        sweep_dir: the sweep directory (its ``wandb/`` holds the report runs).
        job_dirs: the sweep's job directories.
    """
    found = [latest_offline_run(Path(job) / WANDB_DIR) for job in job_dirs]
    found.append(latest_offline_run(Path(sweep_dir) / WANDB_DIR))
    return [run for run in found if run is not None]


def wandb_executable() -> str:
    """The ``wandb`` command of this environment (beside the interpreter), else the one on PATH."""
    beside = Path(sys.executable).parent / "wandb"
    if beside.is_file():
        return str(beside)
    found = shutil.which("wandb")
    if found is None:
        raise SyncError("the wandb command is not installed (pip install wandb)")
    return found


def sync_command(
    run_dirs: Sequence[Path], entity: str | None = None, project: str | None = None
) -> list[str]:
    """``wandb sync [--entity E] [--project P] RUN_DIR...``.

    Args:
        run_dirs: offline run directories.
        entity: upload into this entity instead of the runs' default one.
        project: upload into this project instead of the one each run recorded.
    """
    command = [wandb_executable(), "sync"]
    if entity:
        command += ["--entity", entity]
    if project:
        command += ["--project", project]
    return [*command, *(str(path) for path in run_dirs)]


def credentials_source() -> str | None:
    """Where wandb would find an API key without asking: the environment or the netrc file.

    Returns the variable or file name (never the key), None when there is none. Nothing is sent.
    """
    for variable in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE"):
        if os.environ.get(variable):
            return variable
    host = urlsplit(os.environ.get("WANDB_BASE_URL", DEFAULT_BASE_URL)).hostname or ""
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    if not path.is_file():
        return None
    try:
        entry = netrc.netrc(str(path)).authenticators(host)
    except (netrc.NetrcParseError, OSError):
        return None
    return str(path) if entry is not None and entry[2] else None


def require_credentials() -> str:
    """The credentials' source (`credentials_source`).

    Raises:
        SyncError: naming what to set, when there are none.
    """
    source = credentials_source()
    if source is None:
        host = os.environ.get("WANDB_BASE_URL", DEFAULT_BASE_URL)
        raise SyncError(
            f"no wandb API key: set WANDB_API_KEY or run `wandb login` (a netrc entry for {host}); "
            "nothing was uploaded"
        )
    return source


def sync_sweep(
    sweep_dir: Path, job_dirs: Sequence[Path], entity: str | None = None, project: str | None = None
) -> list[Path]:
    """Upload the sweep's offline runs with ``wandb sync``; returns the directories uploaded.

    Args:
        sweep_dir: the sweep directory.
        job_dirs: its job directories.
        entity: upload into this entity (None: the key's default).
        project: upload into this project (None: the one each run recorded).

    Raises:
        SyncError: no offline run, no credentials, or ``wandb sync`` exited non-zero.
    """
    run_dirs = sweep_run_dirs(sweep_dir, job_dirs)
    if not run_dirs:
        raise SyncError(
            f"{sweep_dir}: no offline wandb run (offline-run-*) in its jobs' {WANDB_DIR}/ directories"
        )
    require_credentials()
    env = dict(os.environ, WANDB_MODE="online")
    done = subprocess.run(sync_command(run_dirs, entity, project), env=env, check=False)
    if done.returncode != 0:
        raise SyncError(f"wandb sync exited {done.returncode} ({len(run_dirs)} run directories)")
    return run_dirs
