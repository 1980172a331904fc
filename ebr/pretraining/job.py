"""One `ebr-pretrain` job: data -> split -> snapshot windows -> one trained pair of ID tables per window.

Every window trains fresh tables (a snapshot never starts from an older one, so what it has seen
is exactly its window). Every rank of a multi-process job trains on its share of the pairs, with
the tables sharded over the ranks; rank 0 alone writes the snapshots. The entry point
(ebr.pretrain, through ebr.app and ebr.runs) wraps the job with skip/refuse, failure records,
loggers and the outcome file.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf

from ebr.data.schema import SECONDS_PER_DAY, InteractionData, Split
from ebr.models.frequency import frequency_estimator
from ebr.models.loss import SampledSoftmaxLoss
from ebr.pretraining.integrity import window_digest
from ebr.pretraining.model import IdTables, PairBatches, PretrainModule, process_rank_and_size
from ebr.pretraining.selection import NoSnapshotWindowError, snapshot_windows
from ebr.pretraining.snapshots import discard_snapshots, save_snapshot
from ebr.runs import JobLoggers, JobResult, is_rank_zero
from ebr.training.distributed import FusedTableOptimizer, ensure_process_group
from ebr.training.setup import seeded_data_and_split

log = logging.getLogger("ebr.pretraining")
SNAPSHOT_DIR = "snapshots"
TrainerFactory = Callable[[], pl.Trainer]


@dataclass(frozen=True)
class TrainedTables:
    """The outcome of training one snapshot's tables.

    Args:
        tables: side -> (rows, d) trained table (complete on rank 0 only under several ranks).
        ids: side -> ascending data row ids of the rows.
        epoch_losses: mean training loss of every epoch (over every rank's pairs).
        scale: the loss's final scale (1 / temperature).
        examples: engagement pairs in the window.
        seconds: training wall time.
    """

    tables: dict[str, torch.Tensor]
    ids: dict[str, np.ndarray]
    epoch_losses: list[float]
    scale: float
    examples: int
    seconds: float


def window_pairs(events: pd.DataFrame, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
    """(user, pin) data ids of the engagement events (event >= CLICK) with start <= timestamp < end.

    Args:
        events: engagement rows (`InteractionData.engagements()`).
        start: first second of the window.
        end: end of the window (excluded).
    """
    timestamps = events["timestamp"].to_numpy()
    mask = (timestamps >= start) & (timestamps < end)
    return events["user"].to_numpy(np.int64)[mask], events["pin"].to_numpy(np.int64)[mask]


def train_tables(
    users: np.ndarray,
    pins: np.ndarray,
    settings: Mapping[str, Any],
    make_trainer: TrainerFactory,
    seed: int,
    log_name: str = "pretrain/loss",
) -> TrainedTables:
    """Train a user and a pin ID table on engagement pairs (every rank of the process group calls it).

    Args:
        users: user data id of each pair.
        pins: pin data id of each pair.
        settings: the `pretrain` node as plain Python (embedding_dim, batch_size, logq, sharding,
            loss / dense_optimizer / sparse_optimizer `_target_` nodes).
        make_trainer: builds the Lightning trainer (epochs, loggers).
        seed: seeds the tables' initialisation and the shuffles.
        log_name: the name the training loss is logged under.
    """
    if len(users) == 0:
        raise ValueError("the snapshot window holds no engagements")
    user_ids, user_rows = np.unique(users, return_inverse=True)
    pin_ids, pin_rows = np.unique(pins, return_inverse=True)
    rank, world_size = process_rank_and_size()
    torch.manual_seed(seed)  # the tables' initialisation
    loss: SampledSoftmaxLoss = hydra.utils.instantiate(settings["loss"])
    sparse: FusedTableOptimizer = hydra.utils.instantiate(settings["sparse_optimizer"])
    module = PretrainModule(
        tables=functools.partial(IdTables, len(user_ids), len(pin_ids), int(settings["embedding_dim"])),
        loss=loss,
        frequency=frequency_estimator(str(settings["logq"]), pin_rows, len(pin_ids)),
        dense_optimizer=hydra.utils.instantiate(settings["dense_optimizer"]),
        sparse_optimizer=sparse,
        sharding=str(settings["sharding"]),
        batches=PairBatches(user_rows, pin_rows, int(settings["batch_size"]), seed, rank, world_size),
        log_name=log_name,
    )
    trainer = make_trainer()
    started = time.perf_counter()
    trainer.fit(module)
    seconds = time.perf_counter() - started
    return TrainedTables(
        tables=module.export_tables(),
        ids={"user": user_ids, "pin": pin_ids},
        epoch_losses=list(module.epoch_losses),
        scale=float(loss.scale.detach()),
        examples=len(users),
        seconds=seconds,
    )


def train_window(split: Split) -> tuple[int, int]:
    """The retrieval training window's (start, end) of a split with global windows.

    Raises:
        ValueError: for a split without global windows (the per-user split).
    """
    if "train" not in split.windows or "pretrain" not in split.windows:
        raise ValueError(
            "pre-training needs a split with global time windows (split=global_temporal): snapshots "
            "are laid against one training window start"
        )
    return split.windows["train"]


def window_advice(cfg: DictConfig, error: NoSnapshotWindowError) -> str:
    """The no-window error with overrides of this job's own data and split configs that each make a
    window fit (the split lays its windows back from the last event, so a longer world or a shorter
    training window leaves more days before training).

    Args:
        cfg: the pre-training job's config.
        error: what `snapshot_windows` raised.
    """
    short = error.short_days
    fixes = []
    n_days = OmegaConf.select(cfg, "data.config.n_days", default=None)
    if isinstance(n_days, int):
        fixes.append(f"data.config.n_days={n_days + short}")
    train_days = OmegaConf.select(cfg, "split.train_days", default=None)
    if isinstance(train_days, int | float) and train_days - short >= 1:
        fixes.append(f"split.train_days={train_days - short:g}")
    pretrain_days = OmegaConf.select(cfg, "split.pretrain_days", default=None)
    if isinstance(pretrain_days, int | float):
        fixes.append(f"split.pretrain_days={pretrain_days + short:g} (when the data holds those days)")
    return f"{error.facts}; {error.advice(fixes)}"


def run_pretrain(cfg: DictConfig, run_dir: Path, loggers: JobLoggers) -> JobResult:
    """Run one configured pre-training job: write its snapshot set and return its figures.

    Args:
        cfg: the composed `conf/pretrain.yaml` config.
        run_dir: the job's directory (`snapshots/` goes there unless `pretrain.snapshot.dir` is set).
        loggers: where training curves go.
    """
    data, split = seeded_data_and_split(cfg)
    train_start, train_end = train_window(split)
    schedule = cfg.pretrain.snapshot
    try:
        windows = snapshot_windows(
            split.windows["pretrain"][0],
            train_start,
            train_end,
            float(schedule.every_days),
            float(schedule.window_days),
            str(schedule.end),
            schedule.max_snapshots,
        )
    except NoSnapshotWindowError as error:
        raise ValueError(window_advice(cfg, error)) from None
    snapshot_dir = Path(schedule.dir) if schedule.dir else Path(run_dir) / SNAPSHOT_DIR
    settings: dict[str, Any] = OmegaConf.to_container(cfg.pretrain, resolve=True)  # type: ignore[assignment]
    events = data.engagements()
    metrics: dict[str, float] = {"snapshots": float(len(windows))}
    created_group = ensure_process_group(run_dir)
    try:
        if is_rank_zero() and not schedule.dir:
            # the run directory's own set: a re-run (force=true) replaces it whole
            discard_snapshots(snapshot_dir)
        for index, (start, end) in enumerate(windows):
            users, pins = window_pairs(events, start, end)
            log.info(
                "snapshot %d/%d: days [%g, %g), %d engagements",
                index + 1,
                len(windows),
                start / SECONDS_PER_DAY,
                end / SECONDS_PER_DAY,
                len(users),
            )
            trained = train_tables(
                users,
                pins,
                settings,
                lambda: hydra.utils.instantiate(cfg.trainer, logger=loggers.lightning or False),
                cfg.seed,
                log_name=f"pretrain/snapshot{index}/loss",
            )
            metrics.update(_figures(f"snapshot{index}/", trained, start, end, train_start))
            if is_rank_zero():
                manifest = _manifest(cfg, data, trained, start, end, train_start, train_end, settings)
                path = save_snapshot(snapshot_dir, trained.tables, trained.ids, manifest)
                log.info("snapshot written to %s", path)
        metrics["pretrain/world_size"] = float(dist.get_world_size())
        metrics["data/duplicate_rows"] = float(data.duplicate_rows)
    finally:
        if created_group and dist.is_initialized():
            dist.destroy_process_group()
    info = {"data_name": data.name, "data_source": data.source, "snapshot_dir": str(snapshot_dir)}
    return JobResult(metrics, info=info)


def _figures(prefix: str, trained: TrainedTables, start: int, end: int, train_start: int) -> dict[str, float]:
    losses = trained.epoch_losses
    return {
        f"{prefix}window_start_day": start / SECONDS_PER_DAY,
        f"{prefix}window_end_day": end / SECONDS_PER_DAY,
        f"{prefix}overlaps_train": float(end > train_start),
        f"{prefix}examples": float(trained.examples),
        f"{prefix}users": float(len(trained.ids["user"])),
        f"{prefix}pins": float(len(trained.ids["pin"])),
        f"{prefix}loss_first_epoch": losses[0] if losses else float("nan"),
        f"{prefix}loss_last_epoch": losses[-1] if losses else float("nan"),
        f"{prefix}epochs": float(len(losses)),
        f"{prefix}scale": trained.scale,
        f"{prefix}seconds": trained.seconds,
    }


def _manifest(
    cfg: DictConfig,
    data: InteractionData,
    trained: TrainedTables,
    start: int,
    end: int,
    train_start: int,
    train_end: int,
    settings: dict[str, Any],
) -> dict[str, Any]:
    return {
        "window": {
            "start": start,
            "end": end,
            "start_day": start / SECONDS_PER_DAY,
            "end_day": end / SECONDS_PER_DAY,
        },
        "train_window": {"start": train_start, "end": train_end},
        # what it was trained on, re-derived from the data when a retrieval job selects it
        "window_events": window_digest(data.engagements(), start, end),
        "overlaps_train": end > train_start,
        "data_name": data.name,
        "data_source": data.source,
        "normalized": True,
        "examples": trained.examples,
        "epoch_losses": trained.epoch_losses,
        "scale": trained.scale,
        "seed": int(cfg.seed),
        "world_size": dist.get_world_size() if dist.is_initialized() else 1,
        "created": time.time(),
        "config": {
            "pretrain": settings,
            "data": OmegaConf.to_container(cfg.data, resolve=True),
            "split": OmegaConf.to_container(cfg.split, resolve=True),
            "trainer": OmegaConf.to_container(cfg.trainer, resolve=True),
        },
    }
