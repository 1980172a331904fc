"""LightningDataModule serving (user, engaged pin) batches from a Split."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
import pytorch_lightning as pl
from torch.utils.data import DataLoader, IterableDataset

from ebr.data.batching import Batch, FeatureGatherer, make_batch
from ebr.data.prefetch import Prefetched
from ebr.data.schema import InteractionData, Split
from ebr.data.sequences import ExampleBags


class NegativeDraws(Protocol):
    """Random negatives of a training (e.g. ebr.training.negatives.UniformDraws)."""

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """One global batch's negative pin ids, drawn from the pass's generator."""
        ...


@dataclass(frozen=True)
class Batching:
    """How a training window is cut into batches.

    Args:
        batch_size: examples per global batch (the in-batch softmax width).
        seed: base seed of the shuffles and negative draws.
        rank: this process's rank; each rank trains on its share of every batch (EngagementBatches).
        world_size: processes in the job.
        prefetch: training batches built ahead in a background thread (0: built on demand).
    """

    batch_size: int = 1024
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    prefetch: int = 0


class EngagementBatches(IterableDataset):
    """Batches over the engagement rows of one window, reshuffled every pass.

    Each pass draws its permutation (and its random negatives) from (seed, pass number) alone, so
    runs are reproducible, epochs differ, and a resumed run can skip exactly the batches already
    consumed (`resume_at`). Batches are built whole, vectorised; the DataLoader must use
    batch_size=None.

    Args:
        events: engagement rows (user and pin columns used).
        user_gatherer: builds user-tower inputs.
        pin_gatherer: builds pin-tower inputs.
        batch_size: examples per batch.
        shuffle: shuffle each pass (training) or keep order (validation).
        seed: base seed of the shuffles and negative draws.
        negatives: draws each global batch's random negatives (`model/negatives`), or None.
        drop_last: drop a final incomplete batch (keeps the in-batch softmax size constant).
        conditions: each row's condition interest (conditional retrieval), or None.
        rank: this process's rank in a multi-process job.
        world_size: processes in the job. Each global batch of `batch_size` rows is cut into
            `world_size` equal shares and this rank yields share `rank`: every rank takes the same
            number of steps (the sharded tables' forward is a collective) and an epoch still has
            `len(self)` steps of `batch_size` examples in all. The random negatives are the same on
            every rank (one draw per global batch).
        sequences: each training example's own sequence and dense draws (the sequence tower,
            ebr.data.sequences) and causal history bag (ebr.data.history), or None: the
            gatherer's bags alone. The draws use a generator
            of (seed, pass, batch) of their own, so skipped batches need not draw.
    """

    def __init__(
        self,
        events: pd.DataFrame,
        user_gatherer: FeatureGatherer,
        pin_gatherer: FeatureGatherer,
        batch_size: int,
        shuffle: bool,
        seed: int,
        negatives: NegativeDraws | None = None,
        drop_last: bool = False,
        conditions: np.ndarray | None = None,
        rank: int = 0,
        world_size: int = 1,
        sequences: ExampleBags | None = None,
    ) -> None:
        super().__init__()
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not a rank of a {world_size}-process job")
        if batch_size % world_size:
            raise ValueError(
                f"train.batch_size={batch_size} does not split into {world_size} equal per-rank shares"
            )
        self.rank, self.world_size = rank, world_size
        self.users = events["user"].to_numpy(np.int64)
        self.pins = events["pin"].to_numpy(np.int64)
        self.conditions = None if conditions is None else np.asarray(conditions, dtype=np.int64)
        self.user_gatherer = user_gatherer
        self.pin_gatherer = pin_gatherer
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.negatives = negatives
        self.sequences = sequences
        self.drop_last = drop_last and len(self.users) >= batch_size
        self._passes = 0
        self._skip = 0

    def __len__(self) -> int:
        n = len(self.users)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def passes(self) -> int:
        """Passes started so far (the next pass's number)."""
        return self._passes

    def resume_at(self, pass_number: int, skip: int) -> None:
        """Make the next pass pass `pass_number`, starting after its first `skip` batches.

        Args:
            pass_number: the pass (epoch) to resume.
            skip: batches of it already consumed.
        """
        if pass_number < 0 or not 0 <= skip <= len(self):
            raise ValueError(f"cannot resume at pass {pass_number}, batch {skip} of {len(self)}")
        self._passes, self._skip = pass_number, skip

    def __iter__(self) -> Iterator[Batch]:
        pass_number = self._passes
        rng = np.random.default_rng([self.seed, pass_number])
        self._passes += 1
        skip, self._skip = self._skip, 0
        order = rng.permutation(len(self.users)) if self.shuffle else np.arange(len(self.users))
        for b in range(len(self)):
            rows = order[b * self.batch_size : (b + 1) * self.batch_size]
            if self.world_size > 1:
                # contiguous equal shares (a final short batch, drop_last off, as even as it can be)
                rows = np.array_split(rows, self.world_size)[self.rank]
            negatives = None
            if self.negatives is not None:
                # drawn for skipped batches too, so the later batches get the same negatives
                negatives = self.negatives.draw(rng)
            if b < skip:
                continue
            sequences = draws = None
            if self.sequences is not None:
                sequences, draws = self.sequences(rows, np.random.default_rng([self.seed, pass_number, b]))
            yield make_batch(
                self.user_gatherer,
                self.pin_gatherer,
                self.users[rows],
                self.pins[rows],
                negatives,
                None if self.conditions is None else self.conditions[rows],
                sequences,
                draws,
            )


class TwoTowerDataModule(pl.LightningDataModule):
    """Training and validation batches for a two-tower model.

    Args:
        data: the data set (feature tables).
        split: its temporal split; trains on `split.train`, validates on `split.val`.
        features: the feature lists each tower reads: `user_sparse`, `pin_sparse` (categorical),
            `user_dense`, `pin_dense` (dense; absent: none).
        batching: batch size, seed, this process's rank and the job's world size, prefetch
            (None: `Batching()`'s defaults).
        negatives: each training batch's random negatives (`model/negatives`); None: in-batch only.
        condition_of: maps a window's engagement rows to their condition interests (conditional
            retrieval, ebr.models.conditioning); None: unconditioned batches.
        sequences_of: maps the training window to its examples' own bags (the sequence tower's,
            the causal history bag); None: none. Validation batches read the user table's bags
            (the serving ones).
    """

    def __init__(
        self,
        data: InteractionData,
        split: Split,
        features: Mapping[str, Sequence[str]],
        batching: Batching | None = None,
        negatives: NegativeDraws | None = None,
        condition_of: Callable[[pd.DataFrame], np.ndarray] | None = None,
        sequences_of: Callable[[pd.DataFrame], ExampleBags] | None = None,
    ) -> None:
        super().__init__()
        self.data = data
        self.sequences_of = sequences_of
        self.batching = batching = batching or Batching()
        self.rank, self.world_size, self.prefetch = batching.rank, batching.world_size, batching.prefetch
        self.condition_of = condition_of
        self.split = split
        self.user_gatherer = FeatureGatherer(
            data.users, features["user_sparse"], features.get("user_dense", ()), source=f"{data.name} users"
        )
        self.pin_gatherer = FeatureGatherer(
            data.pins, features["pin_sparse"], features.get("pin_dense", ()), source=f"{data.name} pins"
        )
        self.batch_size = batching.batch_size
        self.seed = batching.seed
        self.negatives = negatives
        if split.train.empty:
            raise ValueError(f"{data.source}: the training window holds no engagements")
        self._train = self._train_batches()
        # training batches a checkpoint this run resumed from had done (load_state_dict)
        self.resumed_batches = 0

    def train_dataloader(self) -> DataLoader:
        batches = self._train if self.prefetch <= 0 else Prefetched(self._train, self.prefetch)
        return DataLoader(batches, batch_size=None)

    def state_dict(self) -> dict[str, int]:
        """The data position a Lightning checkpoint records: the epoch and the batches of it done.

        Read from the trainer's own counters (the batches it processed), not from the dataset,
        which has already built the next batch when the loader prefetches.
        """
        trainer = self.trainer
        if trainer is None:
            return {}
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"epoch": int(trainer.current_epoch), "batches_done": int(done), "batches": len(self._train)}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Resume the training batches where `state_dict` says (before the loader's first pass).

        Args:
            state_dict: what `state_dict` returned when the checkpoint was written.
        """
        if not state_dict:
            return
        if state_dict["batches"] != len(self._train):
            raise ValueError(
                f"the checkpoint's epochs have {state_dict['batches']} batches, this data module's "
                f"{len(self._train)}: it comes from other data or another batch size"
            )
        self._train.resume_at(state_dict["epoch"], state_dict["batches_done"])
        # what an earlier process trained: the throughput of this one counts only its own batches
        self.resumed_batches = state_dict["epoch"] * state_dict["batches"] + state_dict["batches_done"]

    def train_replay_dataloader(self) -> DataLoader:
        """The training window's first-epoch batches again (same shuffle, same negatives), from a
        fresh pass counter: two calls give identical batches, so two measurements over them pair."""
        return DataLoader(self._train_batches(), batch_size=None)

    def _train_batches(self) -> EngagementBatches:
        """The training window's batches, shuffled per pass from the first pass on."""
        return EngagementBatches(
            self.split.train,
            self.user_gatherer,
            self.pin_gatherer,
            self.batch_size,
            shuffle=True,
            seed=self.seed,
            negatives=self.negatives,
            drop_last=True,
            conditions=self._conditions(self.split.train),
            rank=self.rank,
            world_size=self.world_size,
            sequences=None if self.sequences_of is None else self.sequences_of(self.split.train),
        )

    def val_dataloader(self) -> DataLoader | list:
        if self.split.val.empty:
            return []
        batches = EngagementBatches(
            self.split.val,
            self.user_gatherer,
            self.pin_gatherer,
            self.batch_size,
            shuffle=False,
            seed=self.seed,
            drop_last=True,
            conditions=self._conditions(self.split.val),
        )
        return DataLoader(batches, batch_size=None)

    def _conditions(self, events: pd.DataFrame) -> np.ndarray | None:
        return None if self.condition_of is None else self.condition_of(events)
