"""Experiment loggers built from the `logger` config group (wandb offline by default, csv, none).

Everything a logger writes lands inside the run directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger


def wandb_logger(
    save_dir: str,
    project: str = "ebr",
    group: str | None = None,
    job_type: str | None = None,
    name: str | None = None,
    entity: str | None = None,
    tags: list[str] | None = None,
) -> list[Logger]:
    """A wandb run, offline unless the WANDB_MODE environment variable says otherwise.

    Args:
        save_dir: directory for wandb's files (the run directory).
        project: wandb project.
        group: dashboard group (defaults to the experiment name in the config).
        job_type: what this job varies in its sweep (e.g. "model/crossing=masknet").
        name: run name.
        entity: wandb entity (team or user), None for the default.
        tags: run tags.
    """
    os.environ.setdefault("WANDB_MODE", "offline")
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    logger = WandbLogger(
        project=project,
        group=group,
        job_type=(job_type or "single")[:64],
        name=name,
        entity=entity,
        tags=list(tags or []),
        save_dir=save_dir,
        dir=save_dir,
        offline=os.environ["WANDB_MODE"] != "online",
        reinit="finish_previous",
    )
    return [logger]


def csv_logger(save_dir: str) -> list[Logger]:
    """Metrics as CSV under `save_dir/csv/`."""
    return [CSVLogger(save_dir=save_dir, name="csv", version="")]


def no_logger() -> list[Logger]:
    return []


def log_config(loggers: list[Logger], config: dict[str, Any]) -> None:
    for logger in loggers:
        logger.log_hyperparams(config)


def log_final_metrics(loggers: list[Logger], metrics: dict[str, float]) -> None:
    """Final metrics as a last logged step, and as the wandb run summary."""
    for logger in loggers:
        logger.log_metrics({f"final/{name}": value for name, value in metrics.items()})
        if isinstance(logger, WandbLogger):
            logger.experiment.summary.update(metrics)


def finish_loggers(loggers: list[Logger], success: bool = True) -> None:
    """Close every logger; a failed job's wandb run is marked failed (exit code 1)."""
    for logger in loggers:
        logger.finalize("success" if success else "failed")
        if isinstance(logger, WandbLogger):
            logger.experiment.finish(exit_code=0 if success else 1)
