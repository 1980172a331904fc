"""TwoTowerModule: the LightningModule that trains a two-tower model with torchrec sharding.

Embedding tables are updated by a fused optimizer inside backward (row-wise Adagrad by
default); the dense part (towers, crossing, temperature) by the Lightning optimizer.

Its Lightning checkpoints (ebr.training.checkpoint) hold plain tensors: the sharded tables are
assembled, and the fused optimizers' state and the RNG states ride along, so a checkpoint loads
with `weights_only=True` and resumes exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from ebr.data.batching import Batch
from ebr.models.loss import SampledSoftmaxLoss
from ebr.models.tower import ablate_fields
from ebr.training.checkpoint import own_rank_entry, rng_states, set_rng_states
from ebr.training.distributed import (
    FusedTableOptimizer,
    all_gather,
    dense_parameters,
    dense_state_dict,
    ensure_process_group,
    fused_optimizer_state,
    load_dense_state_dict,
    load_fused_optimizer_state,
    shard_model,
)
from ebr.training.negatives import UniformDraws
from ebr.training.plans import DEFAULT_SHARDING

DenseOptimizerFactory = Callable[[list[nn.Parameter]], torch.optim.Optimizer]
FUSED_OPTIMIZER_KEY = "ebr_fused_optimizer"
RNG_KEY = "ebr_rng_states"
RANK_BUFFERS_KEY = "ebr_rank_buffers"


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class TwoTowerModule(pl.LightningModule):
    """Trains a TwoTowerModel with sampled softmax, logQ correction and optional mixed negatives.

    Args:
        model_factory: builds the unsharded TwoTowerModel (called once, in configure_model).
        loss: the sampled-softmax loss (holds the learnable temperature).
        frequency: item-frequency estimator for logQ (CountMinSketch / ExactFrequency), or None.
        negatives: the training's random negatives (`model/negatives`, bound to the negative pool:
            their logQ); None: in-batch negatives only.
        dense_optimizer: builds the optimizer of the dense parameters from their list (Adam at
            1e-3 when None).
        sparse_optimizer: the optimizer fused into the embedding tables (row-wise Adagrad when None).
        sharding: torchrec sharding type of every table.
        run_dir: where the process-group rendezvous file goes.
    """

    def __init__(
        self,
        model_factory: Callable[[], nn.Module],
        loss: SampledSoftmaxLoss,
        frequency: nn.Module | None = None,
        negatives: UniformDraws | None = None,
        dense_optimizer: DenseOptimizerFactory | None = None,
        sparse_optimizer: FusedTableOptimizer | None = None,
        sharding: str = DEFAULT_SHARDING,
        run_dir: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.model_factory = model_factory
        self.model: nn.Module | None = None
        self.loss = loss
        self.frequency = frequency
        self.negatives = negatives
        self.dense_optimizer = dense_optimizer or partial(torch.optim.Adam, lr=1e-3)
        self.sparse_optimizer = sparse_optimizer or FusedTableOptimizer()
        self.sharding = sharding
        self.run_dir = run_dir
        self._rng_to_restore: dict[str, Any] | None = None
        self._buffers_to_restore: dict[str, torch.Tensor] | None = None

    def configure_model(self) -> None:
        if self.model is not None:
            return
        ensure_process_group(self.run_dir)  # no-op when the caller already started one
        self.model = shard_model(self.model_factory(), self.device, self.sharding, self.sparse_optimizer)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # ShardedTensors would need an unrestricted unpickle: store the assembled tables instead
        checkpoint["state_dict"] = dense_state_dict(self)
        checkpoint[FUSED_OPTIMIZER_KEY] = fused_optimizer_state(self.model)
        # per rank: the RNGs, and buffers no collective keeps equal (each rank's item-frequency
        # estimate counts its own share of the batches)
        checkpoint[RNG_KEY] = all_gather(rng_states())
        checkpoint[RANK_BUFFERS_KEY] = all_gather(self._plain_buffers())

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        load_fused_optimizer_state(self.model, checkpoint.get(FUSED_OPTIMIZER_KEY, {}), "the checkpoint")
        # applied in on_train_start: Lightning draws from torch's RNG when it starts the
        # resumed epoch's data iterator, which the uninterrupted run did before the save
        self._rng_to_restore = own_rank_entry(checkpoint[RNG_KEY], "the checkpoint", "RNG states")
        # applied in on_train_start too: Lightning loads the state dict (rank 0's buffers) after this
        self._buffers_to_restore = own_rank_entry(checkpoint[RANK_BUFFERS_KEY], "the checkpoint", "buffers")

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """Copy a checkpoint's plain-tensor state into the live, possibly sharded, tensors in place.

        Args:
            state_dict: what `on_save_checkpoint` stored (every key of this module's state).
            strict: kept for nn.Module's signature; every key is always required.
            assign: not supported (the fused kernels must keep their storage).
        """
        if assign:
            raise ValueError("TwoTowerModule.load_state_dict copies in place; assign=True is not supported")
        load_dense_state_dict(self, dict(state_dict), "the checkpoint")
        return None

    def on_train_start(self) -> None:
        if self._rng_to_restore is not None:
            set_rng_states(self._rng_to_restore)
            self._rng_to_restore = None
        if self._buffers_to_restore is not None:
            live = dict(self._plain_buffers(copy=False))
            if sorted(live) != sorted(self._buffers_to_restore):
                raise ValueError("the checkpoint's per-rank buffers are not this model's")
            with torch.no_grad():
                for name, value in self._buffers_to_restore.items():
                    live[name].copy_(value)
            self._buffers_to_restore = None

    def _plain_buffers(self, copy: bool = True) -> dict[str, torch.Tensor]:
        """The buffers outside the sharded model (a CPU copy of each, unless `copy` is False).

        The model's own dense buffers are data-parallel (DDP sends rank 0's to every rank) and
        torchrec adds some lazily, so rank 0's state dict restores them.
        """
        return {
            f"{name}.{buffer_name}": value.detach().cpu().clone() if copy else value
            for name, child in self.named_children()
            if child is not self.model
            for buffer_name, value in child.named_buffers()
        }

    def on_after_backward(self) -> None:
        # The loss's own parameters (the learnable temperature) sit outside the data-parallel
        # model, so no DDP hook averages their gradients: without this each rank would learn
        # its own temperature from its share of the batch.
        if not torch.distributed.is_initialized() or torch.distributed.get_world_size() == 1:
            return
        for parameter in self.loss.parameters():
            if parameter.grad is not None:
                torch.distributed.all_reduce(parameter.grad)
                parameter.grad /= torch.distributed.get_world_size()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = dense_parameters(self.model) + [p for p in self.loss.parameters() if p.requires_grad]
        return self.dense_optimizer(params)

    def batch_loss(self, batch: Batch, update_frequency: bool) -> torch.Tensor:
        """The sampled-softmax loss of one batch (logQ-corrected, random negatives included).

        Args:
            batch: the batch, on the model's device.
            update_frequency: count the batch's pins in the frequency estimator first (training).
        """
        user, pin, negatives = self.model(batch)
        # the dense all-action objective's rows are (position, future pin) draws (ebr.data.sequences)
        pin_ids = batch.pin.ids if batch.positions is None else batch.positions.pin.ids
        log_q = None
        if self.frequency is not None:
            if update_frequency:
                self.frequency.update(pin_ids)
            log_q = self.frequency.log_q(pin_ids, len(pin_ids))
        negative_ids = negative_log_q = None
        if negatives is not None:
            if self.negatives is None:
                raise ValueError("a batch with random negatives, but the module was given no `negatives`")
            negative_ids = batch.negatives.ids
            negative_log_q = self.negatives.log_q(len(negative_ids), user.device)
        return self.loss(user, pin, pin_ids, log_q, negatives, negative_ids, negative_log_q)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss = self.batch_loss(batch, update_frequency=True)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss is {loss.item()} at epoch {self.current_epoch}, batch {batch_idx}: "
                "lower train.dense_lr / train.sparse_lr, or check the input features for NaN or inf"
            )
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch))
        self.log("train/scale", self.loss.scale.detach(), batch_size=len(batch))
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self.log(
            "val/loss", self.batch_loss(batch, update_frequency=False), prog_bar=True, batch_size=len(batch)
        )

    @torch.no_grad()
    def mean_loss(self, batches: Iterable[Batch], ablated: frozenset[str] = frozenset()) -> float:
        """The example-weighted mean loss over `batches` in evaluation mode (no ID dropout, no
        frequency update), with the fields of the `ablated` features zeroed.

        Every rank must call it with the same batches: the sharded tables' forward is a collective.

        Args:
            batches: the batches (e.g. the data module's `train_replay_dataloader()`).
            ablated: sparse feature names whose fields are replaced by zeros.
        """
        was_training = self.training
        self.eval()
        total, examples = 0.0, 0
        try:
            with ablate_fields(self.model, ablated):
                for batch in batches:
                    batch = batch.to(self.device)
                    total += float(self.batch_loss(batch, update_frequency=False)) * len(batch)
                    examples += len(batch)
        finally:
            self.train(was_training)
        if examples == 0:
            raise ValueError("mean_loss: no batches")
        return total / examples

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """The trained model's weights as plain tensors, keyed like the unsharded model."""
        return dense_state_dict(self.model)
