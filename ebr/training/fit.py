"""Training the two towers, assembled in one place: the data module, the Lightning module, the
checkpointing (resume and `StepCheckpoint`), the Trainer; then the fit, the export and the run files
(`model.pt`, `history.json`, `sharding.json`).

The caller (the two-tower retriever, the kernel benchmark) decides what the towers are (`Towers`:
the network config, the feature lists and specs its parts shaped) and where the run goes (`FitRun`);
`fit_towers` does the rest and returns the training metrics.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch.distributed as dist
from pytorch_lightning.callbacks import ProgressBar, RichProgressBar
from pytorch_lightning.callbacks.progress.rich_progress import _RICH_AVAILABLE

from ebr.data.datamodule import Batching, TwoTowerDataModule
from ebr.data.schema import InteractionData, Split
from ebr.models.artifact import save_artifact
from ebr.models.assembly import Towers
from ebr.models.features import ID_FEATURES
from ebr.models.frequency import frequency_estimator
from ebr.runs import CHECKPOINT_DIR, HISTORY_FILE, MODEL_FILE, SHARDING_FILE, is_rank_zero, write_json_atomic
from ebr.training.checkpoint import StepCheckpoint, resume_from
from ebr.training.distributed import gathered_shard_layouts
from ebr.training.history import EpochHistory
from ebr.training.module import TwoTowerModule
from ebr.training.negatives import UniformDraws
from ebr.training.selection import EpochSelection


@dataclass(frozen=True)
class FitRun:
    """Where a training runs and what the job hands it besides the data.

    Args:
        run_dir: where `model.pt`, `history.json`, `sharding.json` and the checkpoints go.
        negatives: the training's random negatives, the `model/negatives` part bound to the job's
            negative pool (`bind`); None: in-batch negatives only.
        seed: the job's training seed (the batches' shuffles and negative draws).
        loggers: Lightning loggers (empty: none).
        artifact_info: what `model.pt`'s manifest records about the training data.
        fingerprint: builds the digests a resumable checkpoint carries (called only when
            `train.checkpoint_every_n_steps` is set).
    """

    run_dir: Path
    negatives: UniformDraws | None = None
    seed: int = 0
    loggers: Sequence[Any] = ()
    artifact_info: Mapping[str, Any] = field(default_factory=dict)
    fingerprint: Callable[[], dict[str, str]] | None = None


def build_datamodule(
    data: InteractionData, split: Split, towers: Towers, train: Mapping[str, Any], run: FitRun
) -> TwoTowerDataModule:
    """The training and validation batches of this process's rank.

    Args:
        data: the data set.
        split: the fitted split.
        towers: the towers (their feature lists and condition function).
        train: the `train` node (batch size, batch prefetch).
        run: the seed and the random negatives.
    """
    initialized = dist.is_initialized()
    batching = Batching(
        batch_size=train["batch_size"],
        seed=run.seed,
        rank=dist.get_rank() if initialized else 0,
        world_size=dist.get_world_size() if initialized else 1,
        prefetch=int(train.get("prefetch_batches", 0) or 0),
    )
    return TwoTowerDataModule(
        data, split, towers.features, batching, run.negatives, towers.condition_of, towers.sequences_of
    )


def build_module(
    data: InteractionData, split: Split, towers: Towers, train: Mapping[str, Any], run: FitRun
) -> TwoTowerModule:
    """The Lightning module: the loss, the logQ estimator and both optimizers, built from `train`.

    Args:
        data: the data set (its pin count sizes the frequency estimator).
        split: the fitted split (exact logQ counts its training window).
        towers: what builds the model (in `configure_model`).
        train: the `train` node.
        run: the random negatives (their logQ) and the run directory (the process group's rendezvous).
    """
    return TwoTowerModule(
        model_factory=towers.build,
        loss=hydra.utils.instantiate(train["loss"]),
        frequency=frequency_estimator(train["logq"], split.train["pin"].to_numpy(), data.pins.n_rows),
        negatives=run.negatives,
        dense_optimizer=hydra.utils.instantiate(train["dense_optimizer"]),
        sparse_optimizer=hydra.utils.instantiate(train["sparse_optimizer"]),
        sharding=train["sharding"],
        run_dir=run.run_dir,
    )


def fit_towers(
    data: InteractionData,
    split: Split,
    towers: Towers,
    train: Mapping[str, Any],
    trainer_config: Mapping[str, Any],
    run: FitRun,
) -> dict[str, float]:
    """Train the towers on `split.train`, save `model.pt` (rank 0) and return the training metrics.

    Every rank of a multi-process job calls it (a process group must be started); rank 0 writes
    `model.pt`, `history.json` and, when the tables are sharded over several ranks, `sharding.json`,
    then deletes the resumable checkpoint.

    Args:
        data: the data set.
        split: the fitted split (`split.val` gives the validation loss when not empty).
        towers: the towers as their parts shaped them.
        train: the `train` node (batch size, logQ, sharding, loss, optimizers, checkpoint cadence).
        trainer_config: the Lightning `Trainer` config (its `callbacks` run beside the history).
        run: the run directory, seed, random negatives, loggers and artifact manifest.

    Returns:
        `train/seconds`, `train/examples`, `train/examples_per_second`, `train/epochs`,
        `train/world_size`, `final_train_loss` / `final_val_loss` where computed, and the
        `id_ablation/*` losses when `train.id_ablated_loss` is set, `train/chosen_epoch` (and
        `train/chosen_val_loss`, `train/select_epoch_fallback`) when `train.select_epoch` is not
        `last` (ebr.training.selection).
    """
    datamodule = build_datamodule(data, split, towers, train, run)
    module = build_module(data, split, towers, train, run)
    history = EpochHistory()
    selection = EpochSelection.of(train, has_val=not split.val.empty)
    own = [history, *selection.callbacks()]
    trainer, resume = _trainer(trainer_config, train, run, own, has_val=not split.val.empty)
    started = time.perf_counter()
    # Lightning's "dataloader is not resumable" warning is silenced with the other known-harmless
    # ones in one place (ebr.runs.console)
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    seconds = time.perf_counter() - started
    # model.pt, history.json and the id-ablation losses are of the chosen epoch's state
    chosen = selection.finish(module, len(history.train_loss))
    history.chosen_epoch = int(chosen["train/chosen_epoch"]) if chosen else None
    _save(data, towers, train, run, module, history)
    # the batches this process trained: a resumed run's earlier ones took no part of `seconds`
    batches = trainer.current_epoch * len(datamodule.train_dataloader().dataset) - datamodule.resumed_batches
    examples = batches * train["batch_size"]
    metrics = {
        "train/seconds": seconds,
        "train/examples": float(len(split.train)),
        "train/examples_per_second": examples / max(seconds, 1e-9),
        "train/epochs": float(trainer.current_epoch),
        "train/world_size": float(dist.get_world_size()),
        **towers.metrics,
        **chosen,
    }
    if train.get("id_ablated_loss", False):
        metrics.update(id_ablated_losses(module, datamodule))
    for key in ("train/loss", "val/loss"):
        if key in trainer.callback_metrics:
            metrics[f"final_{key.replace('/', '_')}"] = float(trainer.callback_metrics[key])
    return metrics


class EpochProgressBar(RichProgressBar):
    """Lightning's rich progress bar, counting epochs as the user set them: "Epoch 3/3" on the last
    epoch of `trainer.max_epochs=3` (Lightning's own reads "Epoch 2/2")."""

    def _get_train_description(self, current_epoch: int) -> str:
        description = f"Epoch {current_epoch + 1}"
        if self.trainer.max_epochs is not None and self.trainer.max_epochs >= 0:
            description += f"/{self.trainer.max_epochs}"
        width = len(self.validation_description)
        return f"{description:{width}}" if width > len(description) else description


def _trainer(
    trainer_config: Mapping[str, Any],
    train: Mapping[str, Any],
    run: FitRun,
    own: Sequence[pl.Callback],
    has_val: bool = True,
) -> tuple[pl.Trainer, str | None]:
    """The Lightning Trainer with its callbacks (the trainer config's, then `own`: the history and
    the epoch selection), and the checkpoint to resume from (None: none).

    Without a validation window (the refit protocol) no validation loop runs: Lightning would
    otherwise call the empty loader list and warn that it is empty across ranks."""
    # the trainer config's own callbacks (e.g. the benchmark's timer) run beside ours
    callbacks = [*hydra.utils.instantiate(trainer_config.get("callbacks") or []), *own]
    if (
        _RICH_AVAILABLE
        and trainer_config.get("enable_progress_bar", True)
        and not any(isinstance(c, ProgressBar) for c in callbacks)
    ):
        callbacks.append(EpochProgressBar())
    extra: dict[str, Any] = {} if has_val else {"limit_val_batches": 0}
    every = int(train.get("checkpoint_every_n_steps", 0) or 0)
    resume = None
    if every > 0:
        if run.fingerprint is None:
            raise ValueError("train.checkpoint_every_n_steps needs the training's fingerprint (FitRun)")
        fingerprint = run.fingerprint()
        resume = resume_from(run.run_dir, fingerprint)  # refuses another setup's checkpoint
        callbacks.append(StepCheckpoint(run.run_dir, every, fingerprint))
    trainer: pl.Trainer = hydra.utils.instantiate(
        trainer_config, logger=list(run.loggers) or False, callbacks=callbacks, **extra
    )
    return trainer, resume


def _save(
    data: InteractionData,
    towers: Towers,
    train: Mapping[str, Any],
    run: FitRun,
    module: TwoTowerModule,
    history: EpochHistory,
) -> None:
    """Export the trained state (every rank: a collective when sharded) and write the run files (rank 0)."""
    state = module.export_state_dict()
    layouts = gathered_shard_layouts(module.model) if dist.get_world_size() > 1 else None
    if not is_rank_zero():
        return
    run_dir = Path(run.run_dir)
    info = {
        "data_name": data.name,
        "data_source": data.source,
        # table rows are the data's dense ids (meta["original_id"] maps them back)
        "id_mapping": "dense data ids",
        "user_rows": int(data.users.n_rows),
        "pin_rows": int(data.pins.n_rows),
        **towers.manifest,
    }
    info = {**run.artifact_info, **info}
    save_artifact(
        run_dir / MODEL_FILE, towers.network, towers.user_spec, towers.pin_spec, towers.features, state, info
    )
    write_json_atomic(run_dir / HISTORY_FILE, history.history())
    if layouts is not None:
        plan = {"sharding": train["sharding"], "world_size": len(layouts), "ranks": layouts}
        write_json_atomic(run_dir / SHARDING_FILE, plan)
    # model.pt is the trained state now: a later kill re-runs only the evaluation's inputs
    shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)


def id_ablated_losses(module: TwoTowerModule, datamodule: TwoTowerDataModule) -> dict[str, float]:
    """The trained model's loss with and without its ID fields (zeroed, as a dropped ID vector
    is), in evaluation mode, on the training window's first-epoch batches replayed and on the
    validation window: `id_ablation/{train,val}_loss`, `..._loss_without_ids` and
    `id_ablation/{train,val}_reliance` (the difference). A model without ID features relies on
    them by exactly 0.

    Args:
        module: the trained module (`mean_loss`).
        datamodule: its data module (`train_replay_dataloader`, `val_dataloader`).
    """
    ids = frozenset(ID_FEATURES.values())
    windows = {"train": datamodule.train_replay_dataloader}
    if not datamodule.split.val.empty:
        windows["val"] = datamodule.val_dataloader
    metrics: dict[str, float] = {}
    for window, loader in windows.items():
        kept = module.mean_loss(loader())
        ablated = module.mean_loss(loader(), ablated=ids)
        metrics[f"id_ablation/{window}_loss"] = kept
        metrics[f"id_ablation/{window}_loss_without_ids"] = ablated
        metrics[f"id_ablation/{window}_reliance"] = ablated - kept
    return metrics
