"""`history.json`: each epoch's example-weighted mean training loss and its validation loss."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from ebr.training.history import EpochHistory


class _Batch:
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def test_epoch_means_are_weighted_by_batch_size() -> None:
    history = EpochHistory()
    trainer = SimpleNamespace(sanity_checking=False, callback_metrics={})
    epochs = [[(1.0, 2), (2.0, 2), (3.0, 4)], [(0.5, 4), (1.5, 4)]]
    for epoch, batches in enumerate(epochs):
        history.on_train_epoch_start(trainer, None)
        for i, (loss, n) in enumerate(batches):
            history.on_train_batch_end(trainer, None, {"loss": torch.tensor(loss)}, _Batch(n), i)
        trainer.callback_metrics = {"val/loss": torch.tensor(10.0 + epoch)}
        history.on_validation_epoch_end(trainer, None)
        history.on_train_epoch_end(trainer, None)
    trainer.sanity_checking = True  # a sanity pass is not an epoch
    history.on_validation_epoch_end(trainer, None)
    written = history.history()
    assert written["epoch"] == [1, 2]
    assert written["train/loss"] == pytest.approx([(2 + 4 + 12) / 8, (2 + 6) / 8])
    assert written["val/loss"] == pytest.approx([10.0, 11.0])
