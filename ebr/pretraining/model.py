"""The pre-training model: a user ID table and a pin ID table trained by in-batch sampled softmax.

score(user, pin) = scale * <normalize(user_table[user]), normalize(pin_table[pin])>, the loss is
the retrieval model's own `SampledSoftmaxLoss` (in-batch negatives, logQ correction, duplicates of
the positive masked). Both tables live in one torchrec EmbeddingBagCollection, sharded by
`DistributedModelParallel` with the fused row-wise Adagrad the retrieval model's tables use; the
only dense parameter is the loss's learnable temperature.

Rows are compact: a snapshot's tables hold only the users and pins engaged in its window, so a
row index here is a position in the window's sorted ids (`PairBatches` is fed rows, not ids).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, IterableDataset
from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from ebr.models.loss import SampledSoftmaxLoss
from ebr.training.distributed import FusedTableOptimizer, dense_parameters, dense_state_dict, shard_model

TABLE_NAMES = {"user": "pretrain__user", "pin": "pretrain__pin"}
DenseOptimizerFactory = Callable[[list[nn.Parameter]], torch.optim.Optimizer]


class IdTables(nn.Module):
    """The two ID tables as one EmbeddingBagCollection (one id per bag: a plain lookup).

    Args:
        n_users: user rows.
        n_pins: pin rows.
        embedding_dim: width d.
    """

    def __init__(self, n_users: int, n_pins: int, embedding_dim: int) -> None:
        super().__init__()
        if embedding_dim <= 0:
            raise ValueError(f"pretrain.embedding_dim must be positive, got {embedding_dim}")
        self.ebc = EmbeddingBagCollection(
            tables=[
                EmbeddingBagConfig(
                    name=TABLE_NAMES[side],
                    embedding_dim=embedding_dim,
                    num_embeddings=max(int(rows), 1),
                    feature_names=[side],
                    pooling=PoolingType.SUM,
                )
                for side, rows in (("user", n_users), ("pin", n_pins))
            ]
        )

    def forward(self, ids: KeyedJaggedTensor) -> tuple[torch.Tensor, torch.Tensor]:
        """L2-normalised (user, pin) embeddings of a batch's `user` and `pin` keys."""
        pooled = self.ebc(ids).to_dict()
        return F.normalize(pooled["user"], dim=-1), F.normalize(pooled["pin"], dim=-1)


@dataclass
class PairBatch:
    """A batch of (user row, engaged pin row) pairs and the lookup input of both tables."""

    ids: KeyedJaggedTensor
    users: torch.Tensor
    pins: torch.Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> PairBatch:
        return PairBatch(
            self.ids.to(device, non_blocking=non_blocking),
            self.users.to(device, non_blocking=non_blocking),
            self.pins.to(device, non_blocking=non_blocking),
        )

    def __len__(self) -> int:
        return int(self.users.shape[0])


def pair_batch(users: np.ndarray, pins: np.ndarray) -> PairBatch:
    """The PairBatch of aligned user and pin rows."""
    user_rows = torch.as_tensor(users, dtype=torch.int64)
    pin_rows = torch.as_tensor(pins, dtype=torch.int64)
    ids = KeyedJaggedTensor.from_lengths_sync(
        keys=["user", "pin"],
        values=torch.cat([user_rows, pin_rows]),
        lengths=torch.ones(2 * len(user_rows), dtype=torch.int32),
    )
    return PairBatch(ids, user_rows, pin_rows)


class PairBatches(IterableDataset):
    """This rank's share of every batch of the window's pairs, reshuffled every pass.

    `batch_size` is global, as `train.batch_size` is: every rank draws the same permutation from
    (seed, pass), cuts it into batches of `batch_size` pairs and takes the `rank`-th of
    `world_size` equal contiguous shares of each (the split of ebr.data.datamodule), so ranks see
    disjoint data and the same number of batches (each batch is a collective through the sharded
    tables), and one process trains on whole batches. A final incomplete batch is dropped so the
    in-batch softmax keeps its width, unless the pairs are fewer than one batch: then one batch of
    as many pairs as split equally over the ranks.

    Args:
        users: user row of each pair.
        pins: pin row of each pair.
        batch_size: pairs per batch over all ranks (a multiple of `world_size`).
        seed: base seed of the shuffles.
        rank: this process's rank.
        world_size: number of ranks.
    """

    def __init__(
        self,
        users: np.ndarray,
        pins: np.ndarray,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        if batch_size <= 0:
            raise ValueError(f"pretrain.batch_size must be positive, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not a rank of a {world_size}-process job")
        if batch_size % world_size:
            raise ValueError(
                f"pretrain.batch_size={batch_size} does not split into {world_size} equal per-rank shares"
            )
        self.users = np.asarray(users, dtype=np.int64)
        self.pins = np.asarray(pins, dtype=np.int64)
        shared = len(self.users) // world_size * world_size
        if shared == 0:
            raise ValueError(f"{len(self.users)} pairs cannot be shared by {world_size} ranks")
        self.batch_size = min(batch_size, shared)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self._passes = 0

    def __len__(self) -> int:
        return len(self.users) // self.batch_size

    def __iter__(self) -> Iterator[PairBatch]:
        rng = np.random.default_rng([self.seed, self._passes])
        self._passes += 1
        order = rng.permutation(len(self.users))
        for b in range(len(self)):
            rows = order[b * self.batch_size : (b + 1) * self.batch_size]
            if self.world_size > 1:
                rows = np.array_split(rows, self.world_size)[self.rank]
            yield pair_batch(self.users[rows], self.pins[rows])


class PretrainModule(pl.LightningModule):
    """Trains `IdTables` with sampled softmax over in-batch negatives and logQ correction.

    Args:
        tables: builds the unsharded tables (called once, when Lightning configures the model, so
            their initialisation draws from the RNG state at that point).
        loss: the sampled-softmax loss (holds the learnable temperature).
        frequency: logQ estimator over pin rows (`ebr.models.frequency`), or None for no correction.
        dense_optimizer: builds the temperature's optimizer from its parameter list.
        sparse_optimizer: fused into the tables' backward.
        sharding: torchrec sharding type of both tables.
        batches: the training batches.
        log_name: the name the training loss is logged under.
    """

    def __init__(
        self,
        tables: Callable[[], IdTables],
        loss: SampledSoftmaxLoss,
        frequency: nn.Module | None,
        dense_optimizer: DenseOptimizerFactory,
        sparse_optimizer: FusedTableOptimizer,
        sharding: str,
        batches: PairBatches,
        log_name: str = "pretrain/loss",
    ) -> None:
        super().__init__()
        self.tables = tables
        self.model: nn.Module | None = None
        self.loss = loss
        self.frequency = frequency
        self.dense_optimizer = dense_optimizer
        self.sparse_optimizer = sparse_optimizer
        self.sharding = sharding
        self.batches = batches
        self.log_name = log_name
        self.epoch_losses: list[float] = []
        self._sum = torch.zeros(2, dtype=torch.float64)

    def configure_model(self) -> None:
        if self.model is None:
            self.model = shard_model(self.tables(), self.device, self.sharding, self.sparse_optimizer)

    def configure_optimizers(self) -> torch.optim.Optimizer | None:
        params = dense_parameters(self.model) + [p for p in self.loss.parameters() if p.requires_grad]
        # with a fixed temperature nothing is dense: the fused table optimizer does all the work
        return self.dense_optimizer(params) if params else None

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.batches, batch_size=None)

    def batch_loss(self, batch: PairBatch) -> torch.Tensor:
        """The mean sampled-softmax loss of a batch (updates no frequency estimate)."""
        user, pin = self.model(batch.ids)
        log_q = None if self.frequency is None else self.frequency.log_q(batch.pins, len(batch))
        return self.loss(user, pin, batch.pins, log_q)

    def training_step(self, batch: PairBatch, batch_idx: int) -> torch.Tensor:
        if self.frequency is not None:
            self.frequency.update(batch.pins)
        loss = self.batch_loss(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"pre-training loss is {loss.item()} at epoch {self.current_epoch}, batch {batch_idx}: "
                "lower pretrain.sparse_lr / pretrain.dense_lr"
            )
        self._sum += torch.tensor([loss.item() * len(batch), len(batch)], dtype=torch.float64)
        self.log(self.log_name, loss, prog_bar=True, batch_size=len(batch))
        return loss

    def on_train_epoch_end(self) -> None:
        total = self._sum.clone()
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(total)  # the epoch's loss over every rank's pairs
        self.epoch_losses.append(float(total[0] / max(total[1].item(), 1.0)))
        self._sum.zero_()

    def export_tables(self) -> dict[str, torch.Tensor]:
        """The trained tables as plain tensors (a collective when they are sharded over ranks)."""
        state = dense_state_dict(self.model)
        tables = {}
        for side, name in TABLE_NAMES.items():
            keys = [k for k in state if k.endswith(f"embedding_bags.{name}.weight")]
            if len(keys) != 1:
                raise KeyError(f"table {name}: expected one state key, found {keys} in {sorted(state)}")
            tables[side] = state[keys[0]]
        return tables


def process_rank_and_size() -> tuple[int, int]:
    """(rank, world size) of the current process group, (0, 1) without one."""
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
