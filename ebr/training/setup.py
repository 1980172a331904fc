"""The start every training job shares: threads, seeds, then the data and its split."""

from __future__ import annotations

import logging
import os
import random
import sys

import hydra
import numpy as np
from omegaconf import DictConfig

from ebr.data.schema import InteractionData, Split

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and (when loaded) torch's generators as Lightning's
    `seed_everything(seed, workers=True)` does, without importing Lightning.

    A baseline job never loads torch, so torch is seeded only when the job's code has imported it
    (the two-tower retriever and the pre-training job import it at module level, before this runs).
    The environment variables are Lightning's: its dataloaders read `PL_SEED_WORKERS` to seed their
    workers, and spawned ranks read `PL_GLOBAL_SEED`.

    Args:
        seed: the job's seed.
    """
    seed = int(seed)
    if not 0 <= seed <= np.iinfo(np.uint32).max:
        raise ValueError(f"seed must be in [0, {np.iinfo(np.uint32).max}], got {seed}")
    os.environ["PL_GLOBAL_SEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
    os.environ["PL_SEED_WORKERS"] = "1"
    log.debug("seed set to %d", seed)


def seeded_data_and_split(cfg: DictConfig) -> tuple[InteractionData, Split]:
    """Set torch's threads and every seed from `cfg`, then build its data and split.

    Seeding comes first so that anything random in loading or splitting is reproducible too. The
    caller imports the code the job runs first (its retriever's module), so that torch is seeded
    when the job uses it.

    Args:
        cfg: a composed job config with `num_threads`, `seed`, `data` and `split`.

    Raises:
        ValueError: `num_threads` below 1.
    """
    if cfg.num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {cfg.num_threads}")
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(cfg.num_threads)
    seed_everything(cfg.seed)
    data: InteractionData = hydra.utils.instantiate(cfg.data)
    split: Split = hydra.utils.instantiate(cfg.split)(data)
    return data, split
