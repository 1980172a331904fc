"""The start every training job shares: threads, seeds, then the data and its split."""

from __future__ import annotations

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from ebr.data.schema import InteractionData, Split


def seeded_data_and_split(cfg: DictConfig) -> tuple[InteractionData, Split]:
    """Set torch's threads and every seed from `cfg`, then build its data and split.

    Seeding comes first so that anything random in loading or splitting is reproducible too.

    Args:
        cfg: a composed job config with `num_threads`, `seed`, `data` and `split`.

    Raises:
        ValueError: `num_threads` below 1.
    """
    if cfg.num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {cfg.num_threads}")
    torch.set_num_threads(cfg.num_threads)
    pl.seed_everything(cfg.seed, workers=True)
    data: InteractionData = hydra.utils.instantiate(cfg.data)
    split: Split = hydra.utils.instantiate(cfg.split)(data)
    return data, split
