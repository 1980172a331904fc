"""`ebr-train`: the Hydra entry point of training and evaluation (also `python -m ebr.train`).

One job per run directory, through the shared wrapper (ebr.app, ebr.runs): a finished job with the
same config is skipped, one with another config is refused (force=true re-runs it), a failure
writes `error.txt` (and, in a sweep, lets the other jobs go on), and `metrics.json` is written last.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ebr.app import CONFIG_DIR, run_app
from ebr.app import main as app_main
from ebr.runs import JobLoggers, JobResult

log = logging.getLogger("ebr")


def job_notice(cfg: DictConfig, experiment: str | None) -> str | None:
    """The config's `notice` line (conf/notice/) when no experiment is chosen and every one of its
    `when` keys holds; None otherwise.

    Args:
        cfg: the job config.
        experiment: the `experiment` choice (None: none chosen).
    """
    notice = OmegaConf.select(cfg, "notice", default=None)
    if experiment is not None or notice is None:
        return None
    when = notice.get("when") or {}
    if any(OmegaConf.select(cfg, key, default=None) != value for key, value in when.items()):
        return None
    return str(notice.text)


def train_job(cfg: DictConfig, run_dir: Path, loggers: JobLoggers) -> JobResult:
    # imported here so `--help`, config errors and skipped jobs answer before torch loads
    from ebr.pipeline import run_job

    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    notice = job_notice(cfg, choices.get("experiment"))
    if notice is not None:
        log.info(notice)

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
