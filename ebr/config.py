"""Structured schemas for the top of the training config.

Registered with Hydra's ConfigStore and listed first in `conf/train.yaml`'s defaults, so a
mistyped key or a value of the wrong type fails before any work, naming the key.
Config groups that build objects (`data`, `model`, ...) are checked by their targets'
constructors instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

from ebr.data.world.config import register_world_schema


@dataclass
class FeaturesSchema:
    """Feature names each tower reads; null means every feature of the table."""

    user_sparse: list[str] | None = None
    user_dense: list[str] | None = None
    pin_sparse: list[str] | None = None
    pin_dense: list[str] | None = None
    history: bool = False
    history_length: int = 200


@dataclass
class TrainSchema:
    """Optimisation of the two-tower model."""

    batch_size: int = 1024
    dense_lr: float = 1e-3
    sparse_lr: float = 0.05
    sparse_optimizer: str = "rowwise_adagrad"
    sharding: str = "table_wise"
    weight_decay: float = 0.0
    logq: str = "sketch"
    num_negatives: int = 0
    temperature: float = 0.05
    max_scale: float = 100.0
    learn_temperature: bool = True


@dataclass
class PathsSchema:
    cache_dir: str = "${oc.env:EBR_CACHE_DIR,${oc.env:HOME}/.cache/ebr}"


@dataclass
class EbrSchema:
    experiment_name: str = "default"
    seed: int = 0
    force: bool = False
    num_threads: int = 1
    features: FeaturesSchema = field(default_factory=FeaturesSchema)
    train: TrainSchema = field(default_factory=TrainSchema)
    paths: PathsSchema = field(default_factory=PathsSchema)
    report: Any = None
    data: Any = None
    split: Any = None
    model: Any = None
    index: Any = None
    eval: Any = None
    trainer: Any = None
    logger: Any = None


def register_schemas() -> None:
    ConfigStore.instance().store(name="ebr_schema", node=EbrSchema)
    register_world_schema()


def with_default_experiment(overrides: Sequence[str], default: str) -> list[str]:
    """`overrides` with `experiment=<default>` in front, unless they already pick an experiment.

    Args:
        overrides: Hydra command-line overrides.
        default: the experiment a diagnostic script runs on when none is given.
    """
    chosen = any(override.startswith("experiment=") for override in overrides)
    return [*([] if chosen else [f"experiment={default}"]), *overrides]
