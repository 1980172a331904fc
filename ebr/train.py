"""`ebr-train`: the Hydra entry point of training and evaluation (also `python -m ebr.train`).

One job per run directory, through the shared wrapper (ebr.app, ebr.runs): a finished job with the
same config is skipped, one with another config is refused (force=true re-runs it), a failure
writes `error.txt` (and, in a sweep, lets the other jobs go on), and `metrics.json` is written last.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from ebr.app import CONFIG_DIR, run_app
from ebr.app import main as app_main
from ebr.runs import JobLoggers, JobResult


def train_job(cfg: DictConfig, run_dir: Path, loggers: JobLoggers) -> JobResult:
    # imported here so `--help`, config errors and skipped jobs answer before torch loads
    from ebr.pipeline import run_job

    return run_job(cfg, run_dir, loggers)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def run(cfg: DictConfig) -> float | None:
    # the objective of a hyperparameter search trial (None outside a search), for the sweeper
    return run_app(cfg, train_job)


def main() -> None:
    """The console script."""
    app_main("train", run)


if __name__ == "__main__":
    main()
