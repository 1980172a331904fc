"""A Lightning callback that records a training's health per epoch, without changing it: the dense
gradient norms (per parameter group: MaskNet's mask MLPs, its blocks' linear maps, the rest), the
learnable temperature, and MaskNet's activations (the masks' size and sign, the blocks' dead
units). Used for docs/training_health.md; add it to any `ebr-train` run with

    '+trainer.callbacks=[{_target_: scripts.training_probe.TrainingProbe}]'

and read `RUN_DIR/probe.json` (a list with one entry per epoch).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from ebr.models.crossing.masknet import MaskBlock


def _group(name: str) -> str:
    if ".mask_net." in name:
        return "mask_mlp"
    if ".blocks." in name:
        return "block_linear_norm"
    return "other_dense"


class TrainingProbe(pl.Callback):
    """Per-epoch means of the dense gradient norms and of MaskNet's activation statistics.

    Args:
        path: where to write the JSON (default: the trainer's root directory, `probe.json`).
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.epochs: list[dict[str, float]] = []
        self._sums: dict[str, float] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)
        self._hooks: list[Any] = []

    def _add(self, key: str, value: float) -> None:
        self._sums[key] += value
        self._counts[key] += 1

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for name, module in pl_module.named_modules():
            if isinstance(module, MaskBlock):
                tower = "user" if "user" in name else "pin"
                self._hooks.append(module.register_forward_hook(self._block_hook(tower)))

    def _block_hook(self, tower: str) -> Any:
        def hook(block: MaskBlock, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            if not block.training:
                return
            with torch.no_grad():
                mask = block.mask(inputs[0])
                self._add(f"{tower}/mask_abs_mean", float(mask.abs().mean()))
                self._add(f"{tower}/mask_negative_share", float((mask < 0).float().mean()))
                inner = block.mask_net[1](block.mask_net[0](inputs[0]))
                self._add(f"{tower}/mask_inner_dead_share", float((inner == 0).all(dim=0).float().mean()))
                self._add(f"{tower}/block_zero_share", float((output == 0).float().mean()))
                self._add(f"{tower}/block_dead_unit_share", float((output == 0).all(dim=0).float().mean()))

        return hook

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        squares: dict[str, float] = defaultdict(float)
        for name, parameter in pl_module.named_parameters():
            if parameter.grad is not None and not parameter.grad.is_sparse:
                squares[_group(name)] += float(parameter.grad.detach().float().pow(2).sum())
        for group, square in squares.items():
            self._add(f"grad_norm/{group}", square**0.5)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        entry = {key: self._sums[key] / self._counts[key] for key in sorted(self._sums)}
        entry["epoch"] = trainer.current_epoch + 1
        entry["scale"] = float(pl_module.loss.scale.detach())
        for key in ("train/loss", "val/loss"):
            if key in trainer.callback_metrics:
                entry[key] = float(trainer.callback_metrics[key])
        self.epochs.append(entry)
        self._sums.clear()
        self._counts.clear()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for hook in self._hooks:
            hook.remove()
        path = Path(self.path or trainer.default_root_dir) / "probe.json"
        path.write_text(json.dumps(self.epochs, indent=1))
