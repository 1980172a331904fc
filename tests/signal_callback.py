"""A Lightning callback the signal tests hand to a job (``+trainer.callbacks``): the process sends
itself a real signal at a chosen optimizer step, so where training stops is exact."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytorch_lightning as pl


class SignalAtStep(pl.Callback):
    """Sends `signum` to this process once, at the end of optimizer step `step`.

    Args:
        step: the global step after which the signal is sent.
        signum: the signal (default SIGTERM).
    """

    def __init__(self, step: int, signum: int = int(signal.SIGTERM)) -> None:
        self.step = step
        self.signum = signum
        self.sent = False

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self.sent and trainer.global_step >= self.step:
            self.sent = True
            os.kill(os.getpid(), self.signum)
