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

MOVIELENS_LOADER = "ebr.data.loaders.movielens.load_movielens"
TUNED_EXPERIMENT = "movielens_tuned"
TWO_TOWER = "ebr.retrieval.two_tower.TwoTowerRetriever"


def tuned_model_hint(cfg: DictConfig, experiment: str | None) -> str | None:
    """The line that points a `data=movielens` job without an experiment to the tuned model (None
    otherwise): the group's defaults are the plain two-tower settings, well below the tuned ones.

    Args:
        cfg: the job config.
        experiment: the `experiment` choice (None: none chosen).
    """
    if experiment is not None or OmegaConf.select(cfg, "data._target_", default=None) != MOVIELENS_LOADER:
        return None
    if OmegaConf.select(cfg, "model._target_", default=None) != TWO_TOWER:
        return None  # a baseline: its settings are chosen on validation inside the job
    path = OmegaConf.select(cfg, "data.path", default=None)
    where = f" data.path={path}" if isinstance(path, str) else ""
    return (
        f"data=movielens without an experiment trains the plain two-tower defaults; the tuned model is "
        f"`ebr-train experiment={TUNED_EXPERIMENT}{where}` (experiments/movielens.md)"
    )


def train_job(cfg: DictConfig, run_dir: Path, loggers: JobLoggers) -> JobResult:
    # imported here so `--help`, config errors and skipped jobs answer before torch loads
    from ebr.pipeline import run_job

    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    hint = tuned_model_hint(cfg, choices.get("experiment"))
    if hint is not None:
        log.info(hint)

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
