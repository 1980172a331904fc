"""Per-epoch loss curves of a training run (the retriever writes them to `history.json`).

Lightning's `train/loss` is the last batch's value and loggers differ in where they keep curves;
the report reads run directories only, so each run keeps its own epoch means, whatever the logger.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch


class EpochHistory(pl.Callback):
    """Records each epoch's example-weighted mean training loss and its validation loss.

    `history()` is `{"epoch": [1, 2, ...], "train/loss": [...], "val/loss": [...]}` (no `val/loss`
    when the run has no validation window), plus `"chosen_epoch": [k]` when `chosen_epoch` is set
    (the epoch `model.pt` holds, recorded when `train.select_epoch` is not `last`).
    """

    def __init__(self) -> None:
        self.train_loss: list[float] = []
        self.val_loss: list[float] = []
        self._sum = 0.0
        self._examples = 0
        self.chosen_epoch: int | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._sum, self._examples = 0.0, 0

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            self._sum += float(loss.detach()) * len(batch)
            self._examples += len(batch)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._examples:
            self.train_loss.append(self._sum / self._examples)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or "val/loss" not in trainer.callback_metrics:
            return
        self.val_loss.append(float(trainer.callback_metrics["val/loss"]))

    def state_dict(self) -> dict[str, Any]:
        # in Lightning checkpoints: a run resumed mid-epoch carries on with the epoch's sums
        return {
            "train_loss": list(self.train_loss),
            "val_loss": list(self.val_loss),
            "sum": self._sum,
            "examples": self._examples,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.train_loss = list(state_dict["train_loss"])
        self.val_loss = list(state_dict["val_loss"])
        self._sum = float(state_dict["sum"])
        self._examples = int(state_dict["examples"])

    def history(self) -> dict[str, list[float]]:
        """The curves so far."""
        out: dict[str, list] = {
            "epoch": list(range(1, len(self.train_loss) + 1)),
            "train/loss": self.train_loss,
        }
        if self.val_loss:
            out["val/loss"] = self.val_loss
        if self.chosen_epoch is not None:
            out["chosen_epoch"] = [self.chosen_epoch]
        return out
