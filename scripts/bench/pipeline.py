"""Data-pipeline efficiency: training steps/s with the real DataModule over steps/s on pre-built batches.

Both fits are the same `TwoTowerRetriever.fit` (same model, optimizers, Lightning trainer, step
budget and BatchTimer); the only difference is where the training batches come from. The second
fit swaps in a DataModule whose training batches were built before the trainer started, so its
steps/s is the model's alone and the ratio is the share of the model's speed the pipeline keeps.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
from omegaconf import DictConfig
from torch.utils.data import DataLoader, IterableDataset

import ebr.training.fit as training_fit
from bench.training import fit_timed
from ebr.data.batching import Batch
from ebr.data.datamodule import TwoTowerDataModule
from ebr.data.schema import InteractionData, Split


class _Replay(IterableDataset):
    """Yields the same pre-built batches on every pass."""

    def __init__(self, batches: list[Batch]) -> None:
        super().__init__()
        self.batches = batches

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def prebuilt_datamodule(steps: int) -> type[TwoTowerDataModule]:
    """A TwoTowerDataModule subclass whose training loader replays batches built in its constructor.

    Args:
        steps: batches to build (the fit's step budget; an epoch with fewer batches repeats).
    """

    class PrebuiltDataModule(TwoTowerDataModule):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._prebuilt = list(itertools.islice(iter(self._train), steps))

        def train_dataloader(self) -> DataLoader:
            return DataLoader(_Replay(self._prebuilt), batch_size=None)

    return PrebuiltDataModule


def bench_pipeline(
    compose: Callable[[Path], DictConfig],
    data: InteractionData,
    split: Split,
    corpus: np.ndarray,
    run_dir: Path,
    steps: int,
    rounds: int = 1,
) -> dict[str, Any]:
    """Steps per second with the real DataModule and with pre-built batches, and their ratio.

    Args:
        compose: run directory -> the composed config (default model, a BatchTimer writing into
            that directory, step budget `steps`).
        data: the world.
        split: its temporal split.
        corpus: the serving corpus (the pool of random negatives).
        run_dir: scratch directory of the fits.
        steps: the config's step budget (warm-up included).
        rounds: alternating (real, pre-built) pairs. The efficiency is the median of the pairs'
            ratios: the two fits of a pair run back to back, so a change of the machine's load
            between pairs cancels in each ratio (the best of each kind, kept too, does not pair them).
    """
    real, prebuilt = [], []
    for round_ in range(rounds):
        for name, rates in (("real", real), ("prebuilt", prebuilt)):
            directory = run_dir / f"{name}{round_}"
            directory.mkdir(parents=True)
            cfg = compose(directory)
            if name == "real":
                _, timing = fit_timed(cfg, data, split, corpus, directory)
            else:
                with mock.patch.object(training_fit, "TwoTowerDataModule", prebuilt_datamodule(steps)):
                    _, timing = fit_timed(cfg, data, split, corpus, directory)
            rates.append(timing["steps_per_second"])
    ratios = [r / p for r, p in zip(real, prebuilt)]
    return {
        "real_steps_per_second": max(real),
        "prebuilt_steps_per_second": max(prebuilt),
        "rounds": rounds,
        "real_rounds": real,
        "prebuilt_rounds": prebuilt,
        "round_ratios": ratios,
        "efficiency": float(np.median(ratios)),
        "best_ratio": max(real) / max(prebuilt),
    }
