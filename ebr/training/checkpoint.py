"""Resumable training: Lightning checkpoints every N optimizer steps, and resuming from the last one.

A checkpoint (`RUN_DIR/checkpoints/last.ckpt`) holds what an uninterrupted run would carry on
with, so a run killed mid-epoch and started again with the same command ends with the same
metrics (docs: README, Troubleshooting):

- the model's state as plain tensors, the torchrec tables assembled from their shards
  (`TwoTowerModule.on_save_checkpoint`), and the state of the optimizers fused into the tables;
- the dense optimizer and Lightning's loop counters (Lightning's own checkpoint content);
- the data position: the epoch and the batches consumed in it (`TwoTowerDataModule.state_dict`;
  the batch order is a function of seed and epoch, so skipping them is exact);
- the RNG states (torch, numpy's global generator, Python's `random`);
- the per-epoch loss history callback's sums;
- a fingerprint of what the training read (config, data, windows, negative pool;
  ebr.retrieval.fingerprint): a checkpoint of another training setup is refused, never resumed from.

The file is written to a temporary name and renamed, so a kill during the write leaves the
previous checkpoint whole. A multi-process job (torchrun, a multi-task cluster job) writes one file
too: every rank takes part in assembling the sharded tables and sends its RNG states, rank 0 alone
writes; on resume every rank reads that file and copies its own shards' regions back, so the run
directory must be on a file system every rank sees. A checkpoint resumes only the world size
that wrote it (the fingerprint holds it): each rank's share of a batch depends on it.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from ebr.runs import CHECKPOINT_DIR, LAST_CHECKPOINT, is_rank_zero, process_rank, write_atomic

FINGERPRINT_KEY = "ebr_fingerprint"


class CheckpointMismatchError(ValueError):
    """The run directory's checkpoint was written by another training setup, or cannot be read."""


def checkpoint_path(run_dir: str | Path) -> Path:
    """Where a run's last checkpoint lives."""
    return Path(run_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT


def resume_from(run_dir: str | Path, fingerprint: Mapping[str, str]) -> Path | None:
    """The checkpoint to resume from: the run directory's last one when it belongs to this setup.

    Read memory-mapped (only its fingerprint is looked at here; Lightning reads the rest).

    Args:
        run_dir: the run directory.
        fingerprint: this run's fingerprint (name -> digest of each part of its setup).

    Returns:
        The checkpoint's path, or None when there is none.

    Raises:
        CheckpointMismatchError: the checkpoint cannot be read, or another setup wrote it (the
            message names the file and the parts that differ).
    """
    path = checkpoint_path(run_dir)
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get(FINGERPRINT_KEY)
    except Exception as exc:
        raise CheckpointMismatchError(
            f"{path}: cannot read this checkpoint ({type(exc).__name__}: {exc}); "
            "delete it to train from the start"
        ) from exc
    if not isinstance(saved, dict):
        raise CheckpointMismatchError(f"{path} has no ebr fingerprint; delete it to train from the start")
    differing = sorted(key for key in set(saved) | set(fingerprint) if saved.get(key) != fingerprint.get(key))
    if differing:
        raise CheckpointMismatchError(
            f"{path} was written by another training setup (it differs in: {', '.join(differing)}); "
            "delete it (or use another hydra.run.dir) to train from the start"
        )
    return path


class StepCheckpoint(pl.Callback):
    """Saves `checkpoints/last.ckpt` after every `every_n_steps`-th optimizer step, atomically.

    A step that ends an epoch is not saved (the next one is): resuming from it would replay the
    epoch's end (validation, the epoch's loss mean) differently from an uninterrupted run.
    On SIGTERM, the fit stops at the next batch boundary and a final checkpoint is saved there
    (ebr.runs.signals).

    Args:
        run_dir: the run directory.
        every_n_steps: optimizer steps between checkpoints (> 0).
        fingerprint: what decides the training, stored in each checkpoint.
    """

    def __init__(self, run_dir: str | Path, every_n_steps: int, fingerprint: Mapping[str, str]) -> None:
        if every_n_steps <= 0:
            raise ValueError(f"train.checkpoint_every_n_steps must be positive here, got {every_n_steps}")
        self.path = checkpoint_path(run_dir)
        self.every_n_steps = every_n_steps
        self.fingerprint = dict(fingerprint)
        self._last_saved_step: int | None = None
        # whether the batch just done left the loop where a resume continues exactly (mid-epoch)
        self._mid_epoch = False

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._mid_epoch = batch_idx + 1 < trainer.num_training_batches
        if self._last_saved_step is None:
            self._last_saved_step = trainer.global_step - trainer.global_step % self.every_n_steps
        if trainer.global_step - self._last_saved_step < self.every_n_steps:
            return
        if batch_idx + 1 >= trainer.num_training_batches:
            return  # the epoch's last batch: saved after the next step instead
        self.save(trainer)
        self._last_saved_step = trainer.global_step

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[FINGERPRINT_KEY] = self.fingerprint

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        # SIGTERM (a preemption): Lightning stops at a batch boundary (SIGTERMException), where
        # the state is whole, so a final checkpoint lets the re-run lose no step. Not after an
        # epoch's last batch (see the class docstring), nor after other errors (the state may be broken).
        if type(exception).__name__ != "SIGTERMException" or not self._mid_epoch:
            return
        if trainer.global_step == self._last_saved_step:
            return
        self.save(trainer)
        self._last_saved_step = trainer.global_step

    def save(self, trainer: pl.Trainer) -> None:
        """Assemble the checkpoint on every rank; rank 0 writes it to a temporary file, flushes it
        to disk and renames it into place."""
        # Not trainer.save_checkpoint: under torchrun each rank runs a one-device Lightning
        # strategy that counts itself global zero, so every rank would write the file. Assembling
        # is a collective (the sharded tables are gathered), writing is rank 0's alone.
        checkpoint = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
        if not is_rank_zero():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        save = trainer.strategy.checkpoint_io.save_checkpoint
        write_atomic(self.path, lambda temporary: save(checkpoint, temporary), durable=True)


def own_rank_entry(saved: list[Any], source: str, what: str) -> Any:
    """This rank's entry of a per-rank list a checkpoint saved (ebr.training.distributed.all_gather).

    Args:
        saved: the saved list.
        source: where it came from (named in the error).
        what: what the entries are (named in the error).

    Raises:
        CheckpointMismatchError: it holds another number of ranks than this job has.
    """
    ranks = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    if len(saved) != ranks:
        raise CheckpointMismatchError(
            f"{source} holds the {what} of {len(saved)} ranks, this job has {ranks}"
        )
    return saved[process_rank()]


def rng_states() -> dict[str, Any]:
    """Every global RNG's state, in types a `weights_only` load accepts."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys).copy()),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: Mapping[str, Any]) -> None:
    """Restore what `rng_states` returned."""
    torch.set_rng_state(states["torch"])
    saved = states["numpy"]
    np.random.set_state(
        (saved["kind"], saved["keys"].numpy(), saved["position"], saved["has_gauss"], saved["gauss"])
    )
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
