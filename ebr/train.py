"""`ebr-train`: the Hydra entry point (also `python -m ebr.train`).

Each job writes `metrics.json` atomically into its run directory. In a multirun a job that
raises records `error.txt` and returns, so the other jobs go on; a job whose
`metrics.json` already exists is skipped unless `force=true`, so an interrupted sweep resumes.
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ebr.config import register_schemas
from ebr.override_check import unknown_key_message
from ebr.runs import ERROR_FILE, is_finished, record_failure, write_metrics

log = logging.getLogger("ebr.train")
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")
# Overrides that name the sweep's plumbing, not a compared arm.
_NOT_AN_ARM = ("seed", "experiment", "force", "hydra", "logger", "trainer.enable_progress_bar")


def sweep_arm() -> str:
    """What this job varies, e.g. "model/crossing=masknet" (its wandb job type); "single" if nothing."""
    try:
        overrides = HydraConfig.get().overrides.task
    except ValueError:
        return "single"
    arm = [o for o in overrides if not o.lstrip("+~").split("=")[0].startswith(_NOT_AN_ARM)]
    return ",".join(arm) or "single"


register_schemas()
if not OmegaConf.has_resolver("ebr_sweep_arm"):
    OmegaConf.register_new_resolver("ebr_sweep_arm", sweep_arm)


def main() -> None:
    """The console script: check override keys, then hand over to Hydra."""
    message = unknown_key_message(Path(CONFIG_DIR), "train", sys.argv[1:])
    if message is not None:
        print(f"ebr-train: {message}", file=sys.stderr)
        raise SystemExit(2)
    run()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def run(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    if is_finished(run_dir) and not cfg.force:
        log.info("%s already holds metrics.json: skipping (force=true re-runs it)", run_dir)
        return None
    (run_dir / ERROR_FILE).unlink(missing_ok=True)
    # Imported here so `--help`, config errors and skipped jobs answer before torch loads.
    from ebr.pipeline import config_to_dict, run_job
    from ebr.training.loggers import finish_loggers, log_config

    loggers: list = []
    try:
        loggers = hydra.utils.instantiate(cfg.logger)
        log_config(loggers, config_to_dict(cfg))
        metrics = run_job(cfg, run_dir, loggers)
        path = write_metrics(run_dir, metrics)
    except Exception:
        record_failure(run_dir, traceback.format_exc())
        log.exception("job failed; traceback in %s", run_dir / ERROR_FILE)
        finish_loggers(loggers, success=False)
        if multirun:
            return None
        raise
    finish_loggers(loggers)
    log.info("metrics written to %s", path)
    headline = {
        k: metrics[k] for k in ("recall@100", "popularity/recall@100", "sim/engaged_sessions") if k in metrics
    }
    log.info("headline: %s", headline)
    return metrics.get("recall@100")


if __name__ == "__main__":
    main()
