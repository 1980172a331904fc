"""Kernel-level ratios: ebr's fused embedding path vs plain PyTorch, and model FLOP/s vs a large GEMM.

- `bench_embedding_step`: one embedding-heavy training step (sum-pooled bags over several large
  tables, a loss on the pooled vectors, backward, table update), once through ebr's path (a
  torchrec EmbeddingBagCollection sharded by `ebr.training.distributed.shard_model`, the table
  optimizer fused into backward, as `TwoTowerModule` trains) and once through plain PyTorch
  (`nn.EmbeddingBag(sparse=True)` per table, `torch.optim.Adagrad` stepping the sparse gradients).
  Both see the same ids, drawn uniformly (the cache-unfriendly case).
- `gemm_flops_per_second`: a large fp32 matrix product, the machine's practical ceiling.
- `step_flops`: floating-point operations of one default training step (both towers and the
  in-batch logits, forward and backward), counted by `torch.utils.flop_counter.FlopCounterMode`
  (matrix products only: embedding lookups, norms and activations are not counted).
"""

from __future__ import annotations

import gc
import statistics
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor, PoolingType

from ebr.data.schema import InteractionData, Split
from ebr.training.distributed import FusedTableOptimizer, shard_model
from ebr.training.fit import FitRun, build_datamodule, build_module


class _Tables(nn.Module):
    """The module `shard_model` shards: it finds the EmbeddingBagCollection among its children."""

    def __init__(self, collection: EmbeddingBagCollection) -> None:
        super().__init__()
        self.collection = collection

    def forward(self, features: KeyedJaggedTensor) -> torch.Tensor:
        return self.collection(features).values()


def _time_steps(step: Any, batches: list[Any], warmup: int) -> float:
    """Median seconds of `step(batch)` over the batches after the first `warmup` ones."""
    seconds = []
    for i, batch in enumerate(batches):
        started = time.perf_counter()
        step(batch)
        if i >= warmup:
            seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def _torchrec_seconds(
    ids: list[torch.Tensor], rows: int, dim: int, bag: int, fused: FusedTableOptimizer, warmup: int
) -> float:
    """Median step seconds of ebr's path: a sharded EmbeddingBagCollection, the optimizer in backward."""
    tables, flat = ids[0].shape[0], ids[0].shape[1]
    keys = [f"f{t}" for t in range(tables)]
    configs = [
        EmbeddingBagConfig(
            name=f"t{t}", embedding_dim=dim, num_embeddings=rows, feature_names=[key], pooling=PoolingType.SUM
        )
        for t, key in enumerate(keys)
    ]
    model = shard_model(
        _Tables(EmbeddingBagCollection(tables=configs)), torch.device("cpu"), "table_wise", fused
    )
    lengths = torch.full((tables * (flat // bag),), bag, dtype=torch.int64)
    kjts = [KeyedJaggedTensor.from_lengths_sync(keys, step_ids.reshape(-1), lengths) for step_ids in ids]

    def step(features: KeyedJaggedTensor) -> None:
        # no optimizer.step(): the table update runs inside backward
        model(features).pow(2).mean().backward()

    return _time_steps(step, kjts, warmup)


def _plain_seconds(ids: list[torch.Tensor], rows: int, dim: int, bag: int, lr: float, warmup: int) -> float:
    """Median step seconds of plain PyTorch: nn.EmbeddingBag(sparse=True) per table, sparse Adagrad."""
    tables, flat = ids[0].shape[0], ids[0].shape[1]
    bags = nn.ModuleList(nn.EmbeddingBag(rows, dim, mode="sum", sparse=True) for _ in range(tables))
    optimizer = torch.optim.Adagrad(bags.parameters(), lr=lr)
    offsets = torch.arange(0, flat, bag)

    def step(step_ids: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        pooled = torch.cat([table(step_ids[t], offsets) for t, table in enumerate(bags)], dim=1)
        pooled.pow(2).mean().backward()
        optimizer.step()

    return _time_steps(step, ids, warmup)


def bench_embedding_step(
    rows: int,
    tables: int = 4,
    dim: int = 64,
    bag: int = 10,
    batch: int = 4096,
    steps: int = 10,
    warmup: int = 2,
    fused: FusedTableOptimizer | None = None,
    lr: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """Seconds per step of ebr's fused torchrec path and of plain nn.EmbeddingBag + Adagrad.

    The caller must have started a process group (`ensure_process_group`): DMP needs one.

    Args:
        rows: rows of each table.
        tables: number of tables (one feature each).
        dim: embedding width.
        bag: ids per bag (every example has one bag per table).
        batch: examples per step.
        steps: timed steps per path.
        warmup: untimed first steps per path.
        fused: the fused table optimizer (ebr's default, row-wise Adagrad, when None).
        lr: learning rate of both optimizers.
        seed: seed of the ids.
    """
    fused = fused or FusedTableOptimizer(lr=lr)
    rng = np.random.default_rng(seed)
    # (tables, batch * bag) ids per step, shared by both paths
    ids = [torch.from_numpy(rng.integers(0, rows, (tables, batch * bag))) for _ in range(warmup + steps)]
    # one set of large tables in memory at a time: each path frees its own when it returns
    fused_seconds = _torchrec_seconds(ids, rows, dim, bag, fused, warmup)
    gc.collect()
    plain_seconds = _plain_seconds(ids, rows, dim, bag, lr, warmup)
    gc.collect()
    return {
        "tables": tables,
        "rows": rows,
        "dim": dim,
        "bag": bag,
        "batch": batch,
        "steps": steps,
        "fused_optimizer": fused.kind,
        "plain_optimizer": "torch.optim.Adagrad (sparse gradients)",
        "torchrec_seconds_per_step": fused_seconds,
        "plain_seconds_per_step": plain_seconds,
        "speedup": plain_seconds / fused_seconds,
    }


def gemm_flops_per_second(n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of an (n x n) @ (n x n) fp32 matrix product on torch's current threads (median).

    Args:
        n: matrix size (2 n^3 FLOPs a product).
        repeats: timed products after one untimed one.
    """
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=generator) for _ in range(2))
    torch.mm(a, b)
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        seconds.append(time.perf_counter() - started)
    return 2 * n**3 / statistics.median(seconds)


def step_flops(cfg: DictConfig, data: InteractionData, split: Split, corpus: np.ndarray) -> float:
    """FLOPs of one training step of the composed model (forward and backward, loss included).

    The model, loss and batches are built by the functions `ebr-train` builds them with
    (ebr.training.fit); the model is the unsharded one, the batch the data module's first training
    batch, so its size and negatives are the run's.

    Args:
        cfg: the composed `ebr-train` config.
        data: the world.
        split: its temporal split.
        corpus: the pool of random negatives.
    """
    retriever = hydra.utils.instantiate(cfg.model)
    towers = retriever.towers(data, split)
    # no run directory: nothing is trained or written
    run = FitRun(run_dir=Path("."), negatives=retriever.negatives.bind(corpus), seed=cfg.seed)
    datamodule = build_datamodule(data, split, towers, retriever.train, run)
    module = build_module(data, split, towers, retriever.train, run)
    module.model = towers.build()  # unsharded: the FLOPs are the model's, not the sharding's
    batch = next(iter(datamodule.train_dataloader()))
    with FlopCounterMode(display=False) as counter:
        module.batch_loss(batch, update_frequency=False).backward()
    return float(counter.get_total_flops())
