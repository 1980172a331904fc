"""Experiment loggers built from the `logger` config group (wandb offline by default, csv, none).

Each option builds a `RunLoggers`: the Lightning loggers the trainer writes training curves to,
and what the job wrapper (ebr.runs) needs besides: the config, the final metrics, the ending.
Everything a logger writes lands inside the run directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger

# wandb caps a job type at 64 characters
_JOB_TYPE_LIMIT = 64


class RunLoggers:
    """The loggers of one job (implements ebr.runs.JobLoggers).

    Args:
        loggers: Lightning loggers; the trainer logs training curves to them.
    """

    def __init__(self, loggers: Sequence[Logger] = ()) -> None:
        self._loggers = list(loggers)

    @property
    def lightning(self) -> list[Logger]:
        return list(self._loggers)

    def log_config(self, config: dict[str, Any]) -> None:
        for logger in self._loggers:
            logger.log_hyperparams(config)

    def log_final(self, metrics: Mapping[str, float]) -> None:
        """Final metrics as a last logged step (`final/...`), and as the wandb run summary."""
        for logger in self._loggers:
            logger.log_metrics({f"final/{name}": value for name, value in metrics.items()})
            if isinstance(logger, WandbLogger):
                logger.experiment.summary.update(dict(metrics))

    def finish(self, success: bool) -> None:
        """Close every logger; a failed job's wandb run is marked failed (exit code 1)."""
        for logger in self._loggers:
            logger.finalize("success" if success else "failed")
            if isinstance(logger, WandbLogger):
                logger.experiment.finish(exit_code=0 if success else 1)


def wandb_logger(
    save_dir: str,
    project: str = "ebr",
    group: str | None = None,
    job_type: str | None = None,
    name: str | None = None,
    entity: str | None = None,
    tags: Sequence[str] = (),
) -> RunLoggers:
    """A wandb run, offline unless the WANDB_MODE environment variable says otherwise.

    Args:
        save_dir: directory for wandb's files (the run directory).
        project: wandb project.
        group: dashboard group (defaults to the experiment name in the config).
        job_type: the job's arm (Hydra's override_dirname less the excluded keys); "single" when empty.
        name: run name.
        entity: wandb entity (team or user), None for the default.
        tags: run tags.
    """
    os.environ.setdefault("WANDB_MODE", "offline")
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    logger = WandbLogger(
        project=project,
        group=group,
        job_type=(job_type or "single")[:_JOB_TYPE_LIMIT],
        name=name,
        entity=entity,
        tags=list(tags),
        save_dir=save_dir,
        dir=save_dir,
        offline=os.environ["WANDB_MODE"] != "online",
        reinit="finish_previous",
    )
    return RunLoggers([logger])


def csv_logger(save_dir: str) -> RunLoggers:
    """Metrics as CSV under `save_dir/csv/`."""
    return RunLoggers([CSVLogger(save_dir=save_dir, name="csv", version="")])


def no_logger() -> RunLoggers:
    return RunLoggers()
