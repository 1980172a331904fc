"""`ebr-pretrain`: the Hydra entry point of ID-table pre-training (also `python -m ebr.pretrain`).

The same shell as `ebr-train` (ebr.app, ebr.runs): one job per run directory, a finished job with
the same config is skipped, one with another config refused (force=true re-runs it), a failure
writes `error.txt`, and `metrics.json` is written last, after the snapshot set (docs/pretraining.md).
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from ebr.app import CONFIG_DIR, run_app
from ebr.app import main as app_main
from ebr.runs import JobLoggers, JobResult


def pretrain_job(cfg: DictConfig, run_dir: Path, loggers: JobLoggers) -> JobResult:
    # imported here so `--help`, config errors and skipped jobs answer before torch loads
    from ebr.pretraining.job import run_pretrain

    return run_pretrain(cfg, run_dir, loggers)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="pretrain")
def run(cfg: DictConfig) -> float | None:
    # the objective of a hyperparameter search trial (None outside a search), for the sweeper
    return run_app(cfg, pretrain_job)


def main() -> None:
    """The console script."""
    app_main("pretrain", run)


if __name__ == "__main__":
    main()
