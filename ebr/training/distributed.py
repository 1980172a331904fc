"""torchrec model parallelism on any machine, including a one-process CPU job.

Every job starts its own process group when none exists. Under torchrun (WORLD_SIZE set) the
group initialises from the environment (`env://`, torchrun's own rendezvous); otherwise the
rendezvous is a file in the run directory (or a fresh temporary file), so parallel sweep jobs can
never collide the way a fixed MASTER_PORT would.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed._shard.sharded_tensor import ShardedTensor
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.planner import EmbeddingShardingPlanner, Topology
from torchrec.distributed.planner.types import ParameterConstraints
from torchrec.distributed.types import ShardingType
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from torchrec.optim.optimizers import in_backward_optimizer_filter
from torchrec.optim.rowwise_adagrad import RowWiseAdagrad

from ebr.runs import launched, process_rank, world_size
from ebr.runs.cluster import RENDEZVOUS_ENV
from ebr.training.plans import DEFAULT_SHARDING, SHARDING_PLANS

# The planner warns about hand-built topologies and dry-run sizes on every CPU job; the
# plan it makes is still the one asked for, so keep the log readable.
for _noisy in ("torchrec.distributed.planner", "torchrec.distributed.utils"):
    logging.getLogger(_noisy).setLevel(logging.ERROR)

SHARDING_TYPES = {name: ShardingType[name.upper()] for name in SHARDING_PLANS}
SPARSE_OPTIMIZERS = {
    "rowwise_adagrad": RowWiseAdagrad,
    "adagrad": torch.optim.Adagrad,
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
}


@dataclass(frozen=True)
class FusedTableOptimizer:
    """The optimizer applied to the embedding tables inside backward (torchrec's fused update).

    Args:
        kind: one of SPARSE_OPTIMIZERS (row-wise Adagrad keeps one accumulator per row).
        lr: its learning rate.
    """

    kind: str = "rowwise_adagrad"
    lr: float = 0.05

    def __post_init__(self) -> None:
        if self.kind not in SPARSE_OPTIMIZERS:
            raise ValueError(
                f"train.sparse_optimizer.kind={self.kind!r} is not one of {sorted(SPARSE_OPTIMIZERS)}"
            )
        if not self.lr > 0:
            raise ValueError(f"train.sparse_lr must be positive, got {self.lr!r}")

    def apply(self, module: nn.Module) -> None:
        """Fuse the optimizer into the backward of `module`'s parameters."""
        apply_optimizer_in_backward(SPARSE_OPTIMIZERS[self.kind], module.parameters(), {"lr": self.lr})


def ensure_process_group(run_dir: str | Path | None = None, backend: str | None = None) -> bool:
    """Initialise the process group unless one exists.

    Under torchrun (WORLD_SIZE in the environment) the group comes from the environment, in a
    multi-task cluster job from the rendezvous file ebr.runs.cluster names; otherwise it is a
    one-process group with a file rendezvous.

    Args:
        run_dir: directory for the file rendezvous; a temporary directory when None.
        backend: "gloo" or "nccl"; by default nccl when CUDA is available, else gloo.

    Returns:
        True when this call created the group (the caller should destroy it when done).
    """
    if dist.is_initialized():
        return False
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if launched():
        shared_file = os.environ.get(RENDEZVOUS_ENV)
        if shared_file:  # a multi-task cluster job (ebr.runs.cluster)
            Path(shared_file).parent.mkdir(parents=True, exist_ok=True)
            dist.init_process_group(
                backend,
                init_method=f"file://{shared_file}",
                rank=process_rank(),
                world_size=world_size(),
            )
        else:
            dist.init_process_group(backend, init_method="env://")
        return True
    directory = Path(run_dir) if run_dir is not None else Path(tempfile.mkdtemp(prefix="ebr-pg-"))
    directory.mkdir(parents=True, exist_ok=True)
    rendezvous = directory / ".process_group"
    rendezvous.unlink(missing_ok=True)  # a stale file from a killed job would block the rendezvous
    dist.init_process_group(backend, init_method=f"file://{rendezvous.resolve()}", rank=0, world_size=1)
    return True


def shard_model(
    model: nn.Module,
    device: torch.device,
    sharding: str = DEFAULT_SHARDING,
    sparse_optimizer: FusedTableOptimizer | None = None,
) -> DistributedModelParallel:
    """Fuse a sparse optimizer into every trainable EmbeddingBagCollection and shard them with DMP.

    The choice is per collection: a frozen one (every weight `requires_grad=False`, e.g. a frozen
    pre-trained ID table) gets no fused optimizer (so no optimizer state and no update) and is left
    out of the sharding plan: it stays a plain module replicated on every rank, which is what a
    read-only table needs (no gradient to reduce), and a fused kernel would update it in backward.

    Args:
        model: a module holding one or more EmbeddingBagCollections.
        device: the compute device.
        sharding: one of SHARDING_TYPES (row-wise plans need GPUs).
        sparse_optimizer: applied in backward to the tables (row-wise Adagrad at 0.05 when None).
    """
    if sharding not in SHARDING_TYPES:
        raise ValueError(f"train.sharding={sharding!r} is not one of {sorted(SHARDING_TYPES)}")
    sparse_optimizer = sparse_optimizer or FusedTableOptimizer()
    constraints = {}
    frozen = []
    for path, module in model.named_modules():
        if isinstance(module, EmbeddingBagCollection):
            if not any(p.requires_grad for p in module.parameters()):
                frozen.append(path)
                continue
            sparse_optimizer.apply(module)
            for config in module.embedding_bag_configs():
                constraints[config.name] = ParameterConstraints(
                    sharding_types=[SHARDING_TYPES[sharding].value]
                )
    topology = Topology(world_size=dist.get_world_size(), compute_device=device.type)
    planner = EmbeddingShardingPlanner(topology=topology, constraints=constraints)
    plan = planner.collective_plan(model, sharders=None, pg=dist.GroupMember.WORLD)
    for path in frozen:
        plan.plan.pop(path, None)
    return DistributedModelParallel(module=model, device=device, plan=plan)


def dense_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters not updated by a fused in-backward optimizer (they go to the dense optimizer)."""
    return [p for _, p in in_backward_optimizer_filter(model.named_parameters()) if p.requires_grad]


def _shard_region(shard: Any) -> tuple[slice, ...]:
    """Where a local shard sits in its ShardedTensor's full extent."""
    return _region(shard.metadata.shard_offsets, shard.metadata.shard_sizes)


def _sharded_extent(value: ShardedTensor) -> tuple[tuple[int, ...], torch.dtype]:
    """(full size, dtype) of a ShardedTensor from its metadata: `value.size()` and `value.dtype` go
    through the deprecated ShardedTensor `__torch_function__`, which warns (FutureWarning)."""
    metadata = value.metadata()
    return tuple(metadata.size), metadata.tensor_properties.dtype


def _region(offsets: Any, sizes: Any) -> tuple[slice, ...]:
    return tuple(slice(offset, offset + size) for offset, size in zip(offsets, sizes))


def plain_tensor(value: torch.Tensor) -> torch.Tensor:
    """A detached CPU copy of `value`; a ShardedTensor is assembled from its shards first.

    Assembly is local in a one-process job, a gather to rank 0 otherwise (every rank must call
    this then; only rank 0's result is complete).
    """
    if isinstance(value, ShardedTensor):
        size, dtype = _sharded_extent(value)
        full = torch.zeros(size, dtype=dtype)
        if not dist.is_initialized() or dist.get_world_size() == 1:
            for shard in value.local_shards():
                full[_shard_region(shard)] = shard.tensor.detach().cpu()
        else:
            value.gather(dst=0, out=full if dist.get_rank() == 0 else None)
        return full
    return value.detach().cpu().clone()


def copy_into(live: torch.Tensor, saved: torch.Tensor, name: str) -> None:
    """Copy a plain tensor into a live (possibly sharded) one in place: the local shards take
    their regions of it, so fused kernels keep the storage they update.

    Args:
        live: a tensor of a module's or optimizer's state dict (a view of the trained state).
        saved: the plain tensor `plain_tensor` made of it.
        name: its key, for the error.
    """
    shape = _sharded_extent(live)[0] if isinstance(live, ShardedTensor) else tuple(live.size())
    if shape != tuple(saved.size()):
        raise ValueError(f"{name}: the checkpoint holds shape {tuple(saved.size())}, the model {shape}")
    with torch.no_grad():
        if isinstance(live, ShardedTensor):
            for shard in live.local_shards():
                shard.tensor.copy_(saved[_shard_region(shard)])
        else:
            live.copy_(saved)


def dense_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """A plain-tensor state dict of a (possibly sharded) module, for serving without torchrec sharding.

    ShardedTensors are assembled from their shards (`plain_tensor`: a collective with several ranks).
    """
    return {key: plain_tensor(value) for key, value in module.state_dict().items()}


def load_dense_state_dict(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy a `dense_state_dict` back into a (possibly sharded) module, in place.

    Args:
        module: the module, built and sharded as when the state was taken.
        state: its plain-tensor state.
        source: where the state came from (named in errors).

    Raises:
        ValueError: keys missing or unexpected, or a shape that differs.
    """
    live = module.state_dict()
    missing, unexpected = sorted(set(live) - set(state)), sorted(set(state) - set(live))
    if missing or unexpected:
        raise ValueError(
            f"{source} does not hold this model's state: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for key, value in live.items():
        copy_into(value, state[key], f"{source}: {key}")


def gather_to_rank_zero(value: Any) -> list[Any] | None:
    """Every rank's `value` on rank 0, in rank order (None on the other ranks); a collective.

    Tensors travel as numpy arrays: a pickled tensor's storage does not unpickle on the receiving
    rank here (torch 2.13: "UntypedStorage has no attribute dtype").

    Args:
        value: picklable, possibly holding tensors inside dicts, lists and tuples.
    """
    gathered: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(_map_tensors(value, lambda t: t.detach().cpu().numpy()), gathered, dst=0)
    if gathered is None:
        return None
    return [_map_tensors(item, torch.from_numpy, np.ndarray) for item in gathered]


def all_gather(value: Any) -> list[Any]:
    """Every rank's `value` on every rank, in rank order (tensors as in `gather_to_rank_zero`); a
    collective with several ranks, `[value]` in a one-process job."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, _map_tensors(value, lambda t: t.detach().cpu().numpy()))
    return [_map_tensors(item, torch.from_numpy, np.ndarray) for item in gathered]


def _map_tensors(value: Any, convert: Any, kind: type = torch.Tensor) -> Any:
    if isinstance(value, kind):
        return convert(value)
    if isinstance(value, dict):
        return {key: _map_tensors(item, convert, kind) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_map_tensors(item, convert, kind) for item in value)
    return value


def fused_optimizer_state(model: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """The state of the optimizers fused into the tables (e.g. row-wise Adagrad's accumulators),
    as plain tensors keyed by parameter and state name; empty for a model without fused tables.

    With several ranks this is a collective (every rank must call it) and only rank 0's result is
    complete (the others get an empty dict).

    Args:
        model: the DistributedModelParallel model (its `fused_optimizer`, torchrec's KeyedOptimizer).
    """
    # A rank's fused optimizer lists only the tables it holds shards of (table-wise: its own
    # tables), so a per-tensor ShardedTensor gather, which every rank must join in the same
    # order, does not apply: each rank sends its local shards to rank 0 instead.
    pieces = {
        param: {name: _local_pieces(value) for name, value in states.items()}
        for param, states in _fused_state(model).items()
    }
    one_process = not dist.is_initialized() or dist.get_world_size() == 1
    gathered = [pieces] if one_process else gather_to_rank_zero(pieces)
    if gathered is None:
        return {}
    assembled: dict[str, dict[str, torch.Tensor]] = {}
    for rank_pieces in gathered:
        for param, states in rank_pieces.items():
            for name, (size, dtype, shards) in states.items():
                full = assembled.setdefault(param, {}).setdefault(name, torch.zeros(size, dtype=dtype))
                for offsets, tensor in shards:
                    full[_region(offsets, tensor.shape)] = tensor
    return assembled


def _fused_state(model: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """This rank's fused optimizer state tensors (ShardedTensors or replicated plain tensors)."""
    fused = getattr(model, "fused_optimizer", None)
    if fused is None:
        return {}
    return {
        param: {name: value for name, value in states.items() if isinstance(value, torch.Tensor)}
        for param, states in fused.state_dict()["state"].items()
    }


def _local_pieces(
    value: torch.Tensor,
) -> tuple[tuple[int, ...], torch.dtype, list[tuple[list[int], torch.Tensor]]]:
    """(full size, dtype, [(offsets, CPU tensor)]) of this rank's part of one state tensor."""
    if isinstance(value, ShardedTensor):
        shards = [
            (list(shard.metadata.shard_offsets), shard.tensor.detach().cpu())
            for shard in value.local_shards()
        ]
        return (*_sharded_extent(value), shards)
    return tuple(value.size()), value.dtype, [([0] * value.dim(), value.detach().cpu())]


def load_fused_optimizer_state(
    model: nn.Module, state: dict[str, dict[str, torch.Tensor]], source: str
) -> None:
    """Copy a `fused_optimizer_state` back into the fused optimizers' live state, in place
    (the KeyedOptimizer's state dict tensors are views of the kernels' own state). With several
    ranks each copies its own shards' regions (a collective: the ranks' tables are compared).

    Args:
        model: the DistributedModelParallel model.
        state: the saved state.
        source: where it came from (named in errors).
    """
    live = _fused_state(model)
    expected: dict[str, list[str]] = {param: sorted(states) for param, states in live.items()}
    expected = {
        param: names for rank_expected in all_gather(expected) for param, names in rank_expected.items()
    }
    saved = {param: sorted(states) for param, states in state.items()}
    if expected != saved:
        raise ValueError(
            f"{source}: the fused table optimizer state does not match this model's "
            f"(checkpoint {sorted(saved)[:3]}..., model {sorted(expected)[:3]}...)"
        )
    for param, states in live.items():
        for name, value in states.items():
            copy_into(value, state[param][name], f"{source}: fused optimizer {param}.{name}")


def shard_layout(module: nn.Module) -> dict[str, list[dict[str, list[int]]]]:
    """Where this rank's shards of each sharded table sit in the full table (offsets and sizes).

    Replicated (data-parallel) tables are not ShardedTensors and are left out.

    Args:
        module: the sharded model.
    """
    return {
        name: [
            {"offsets": list(shard.metadata.shard_offsets), "sizes": list(shard.metadata.shard_sizes)}
            for shard in value.local_shards()
        ]
        for name, value in module.state_dict().items()
        if isinstance(value, ShardedTensor)
    }


def gathered_shard_layouts(module: nn.Module) -> list[dict[str, list[dict[str, list[int]]]]]:
    """Every rank's `shard_layout`, in rank order (a collective: every rank must call it).

    Args:
        module: the sharded model.
    """
    return all_gather(shard_layout(module))
