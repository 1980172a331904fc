"""Experiment loggers built from the `logger` config group (wandb offline by default, csv, none).

Each option builds a `RunLoggers`: the Lightning loggers the trainer writes training curves to,
and what the job wrapper (ebr.runs) needs besides: the config, the final metrics, the ending.
Everything a logger writes lands inside the run directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytorch_lightning.loggers import Logger

# Lightning's loggers are imported where one is built: `logger=none` (a baseline job) then never
# loads Lightning (experiments/benchmark.md, "Start-up")

# wandb caps a job type and a tag at 64 characters
_JOB_TYPE_LIMIT = 64
_TAG_LIMIT = 64


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

    def log_labels(self, columns: Mapping[str, Any], tags: Sequence[str] = ()) -> None:
        """Top-level config columns (the arm's keys, the data's hash) and, on wandb, run tags.

        Args:
            columns: column name -> scalar (ebr.runs.dashboard).
            tags: added to the wandb run's tags (each cut to wandb's 64 characters).
        """
        for logger in self._loggers:
            if columns:
                logger.log_hyperparams(dict(columns))
            if tags and _is_wandb(logger):
                run = logger.experiment
                added = [tag[:_TAG_LIMIT] for tag in tags]
                run.tags = tuple(dict.fromkeys([*(run.tags or ()), *added]))

    def log_final(self, metrics: Mapping[str, float]) -> None:
        """Final metrics under their metrics.json names: a last logged step, and the wandb run summary.

        The names are the ones ebr-report and the saved workspace's panels read (``recall@100``).
        """
        for logger in self._loggers:
            logger.log_metrics(dict(metrics))
            if _is_wandb(logger):
                logger.experiment.summary.update(dict(metrics))

    def finish(self, success: bool) -> None:
        """Close every logger; a failed job's wandb run is marked failed (exit code 1)."""
        for logger in self._loggers:
            logger.finalize("success" if success else "failed")
            if _is_wandb(logger):
                logger.experiment.finish(exit_code=0 if success else 1)


def _is_wandb(logger: Logger) -> bool:
    # imported here: a logger exists, so Lightning is loaded already
    from pytorch_lightning.loggers import WandbLogger

    return isinstance(logger, WandbLogger)


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
    from pytorch_lightning.loggers import WandbLogger

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
    from pytorch_lightning.loggers import CSVLogger

    return RunLoggers([CSVLogger(save_dir=save_dir, name="csv", version="")])


def no_logger() -> RunLoggers:
    return RunLoggers()
