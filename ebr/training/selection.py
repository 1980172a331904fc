"""Which epoch's weights a training exports (`train.select_epoch`): the last one (the default) or
the one with the lowest validation loss.

The best epoch's state is kept in memory (the module's plain-tensor state, as its checkpoints hold
it) rather than as a Lightning `.ckpt` written by `ModelCheckpoint`: the tables are sharded and
updated by a fused optimizer, so the one state that serves is the module's own export, and a run
must leave nothing but `model.pt` behind. Early stopping is Lightning's own `EarlyStopping`, added
through the trainer config's `callbacks` (docs/training_health.md); the best epoch is kept either way.
"""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist

from ebr.training.distributed import all_gather, dense_state_dict, load_dense_state_dict
from ebr.training.plans import SELECTIONS

log = logging.getLogger(__name__)

VAL_LOSS = "val/loss"


class BestEpoch(pl.Callback):
    """Keeps the module's state at the end of the epoch with the lowest validation loss.

    Ties keep the earlier epoch. With several ranks the validation loss is averaged over them
    first, so every rank takes the same decision (the state's assembly is a collective).
    """

    def __init__(self) -> None:
        self.best_loss = float("inf")
        self.best_epoch = 0
        self.state: dict[str, torch.Tensor] | None = None

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or VAL_LOSS not in trainer.callback_metrics:
            return
        loss = trainer.callback_metrics[VAL_LOSS].detach().float().cpu().clone()
        if dist.is_initialized() and dist.get_world_size() > 1:
            loss = torch.stack(all_gather(loss)).mean()
        if float(loss) < self.best_loss:
            self.best_loss = float(loss)
            self.best_epoch = trainer.current_epoch + 1  # 1-based, as history.json counts
            self.state = dense_state_dict(pl_module)

    def restore(self, module: pl.LightningModule) -> None:
        """Copy the kept state back into the live module (every rank: rank 0's copy is the
        complete one when the tables are sharded over several ranks)."""
        state = all_gather(self.state if not dist.is_initialized() or dist.get_rank() == 0 else None)[0]
        if state is None:
            raise ValueError("BestEpoch.restore: no validation loss was ever recorded")
        load_dense_state_dict(module, state, f"the best epoch's state (epoch {self.best_epoch})")

    def state_dict(self) -> dict[str, Any]:
        # in the resumable checkpoint: a resumed run still knows the best epoch before the kill
        return {"best_loss": self.best_loss, "best_epoch": self.best_epoch, "state": self.state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_loss = float(state_dict["best_loss"])
        self.best_epoch = int(state_dict["best_epoch"])
        self.state = state_dict["state"]


class EpochSelection:
    """The `train.select_epoch` setting of one training.

    Without a validation window (the refit protocol) there is nothing to select by: the last epoch
    is exported, which is logged and recorded (`train/select_epoch_fallback`).

    Args:
        select_epoch: `last` or `best_val_loss`.
        has_val: whether the split has a validation window.
    """

    def __init__(self, select_epoch: str, has_val: bool) -> None:
        if select_epoch not in SELECTIONS:
            raise ValueError(f"train.select_epoch={select_epoch!r}: must be one of {', '.join(SELECTIONS)}")
        self.requested = select_epoch != "last"
        self.fallback = self.requested and not has_val
        if self.fallback:
            log.warning(
                "train.select_epoch=%s needs a validation window, and this split has none (the refit "
                "protocol): the last epoch is exported",
                select_epoch,
            )
        self.best = BestEpoch() if self.requested and has_val else None

    @classmethod
    def of(cls, train: Any, has_val: bool) -> EpochSelection:
        """From the `train` node (no `select_epoch` key: `last`).

        Args:
            train: the `train` node.
            has_val: whether the split has a validation window.
        """
        return cls(str(train.get("select_epoch", "last")), has_val)

    def callbacks(self) -> list[pl.Callback]:
        """The Lightning callbacks that carry it out (none for the default)."""
        return [] if self.best is None else [self.best]

    def finish(self, module: pl.LightningModule, epochs: int) -> dict[str, float]:
        """Put the chosen epoch's state into the module and return what to record (nothing for the
        default, whose run files stay as they were).

        Args:
            module: the trained module.
            epochs: the epochs trained.
        """
        if not self.requested:
            return {}
        out = {"train/chosen_epoch": float(epochs), "train/select_epoch_fallback": float(self.fallback)}
        if self.best is not None and self.best.state is not None:
            out["train/chosen_epoch"] = float(self.best.best_epoch)
            out["train/chosen_val_loss"] = self.best.best_loss
            if self.best.best_epoch != epochs:
                self.best.restore(module)
        return out
