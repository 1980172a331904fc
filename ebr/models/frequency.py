"""Item-frequency estimates for the logQ correction.

`CountMinSketch` is the streaming estimator (bounded memory, never under-counts);
`ExactFrequency` uses counts of the training window, known up front in offline training.
Both turn a frequency into log P(item appears in a batch of size B) ~ log(B * count / total).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

_PRIME = 2_147_483_647  # 2^31 - 1: hash coefficients below it keep int64 products exact


class CountMinSketch(nn.Module):
    """A count-min sketch of item ids, updated with every training batch.

    Args:
        width: counters per row (error ~ total / width).
        depth: independent hash rows (the estimate is the minimum over rows).
        seed: seed of the hash coefficients.
    """

    def __init__(self, width: int = 1 << 16, depth: int = 4, seed: int = 0) -> None:
        super().__init__()
        if width <= 0 or depth <= 0:
            raise ValueError(f"CountMinSketch width and depth must be positive, got {width}, {depth}")
        generator = torch.Generator().manual_seed(seed)
        self.width = width
        self.register_buffer(
            "a", torch.randint(1, _PRIME, (depth, 1), generator=generator, dtype=torch.int64)
        )
        self.register_buffer(
            "b", torch.randint(0, _PRIME, (depth, 1), generator=generator, dtype=torch.int64)
        )
        self.register_buffer("counts", torch.zeros(depth, width, dtype=torch.float64))
        self.register_buffer("total", torch.zeros((), dtype=torch.float64))

    def _buckets(self, ids: torch.Tensor) -> torch.Tensor:
        ids = (ids.to(torch.int64) % _PRIME).unsqueeze(0)
        return ((self.a * ids + self.b) % _PRIME) % self.width

    @torch.no_grad()
    def update(self, ids: torch.Tensor) -> None:
        buckets = self._buckets(ids)
        self.counts.scatter_add_(1, buckets, torch.ones_like(buckets, dtype=torch.float64))
        self.total += ids.numel()

    @torch.no_grad()
    def estimate(self, ids: torch.Tensor) -> torch.Tensor:
        """Estimated count of each id (an upper bound of the true count)."""
        return self.counts.gather(1, self._buckets(ids)).min(dim=0).values

    @torch.no_grad()
    def log_q(self, ids: torch.Tensor, batch_size: int) -> torch.Tensor:
        """log P(id in a batch of `batch_size`), clamped to at most log 1."""
        # an id never seen yet counts as seen once: its first batch must not get an unbounded boost
        probability = self.estimate(ids).clamp(min=1.0) / self.total.clamp(min=1.0)
        return torch.log((probability * batch_size).clamp(max=1.0)).to(torch.float32)


class ExactFrequency(nn.Module):
    """Frequencies counted once over the training window.

    Args:
        pin_ids: every training example's pin id.
        num_pins: size of the id space.
    """

    def __init__(self, pin_ids: np.ndarray, num_pins: int) -> None:
        super().__init__()
        counts = np.bincount(np.asarray(pin_ids, dtype=np.int64), minlength=num_pins).astype(np.float64)
        # pins absent from training (e.g. in validation batches) count as seen once
        self.register_buffer(
            "probability", torch.from_numpy(np.maximum(counts, 1.0) / max(counts.sum(), 1.0))
        )

    def update(self, ids: torch.Tensor) -> None:
        """Counts are fixed; kept for the same interface as the sketch."""

    @torch.no_grad()
    def log_q(self, ids: torch.Tensor, batch_size: int) -> torch.Tensor:
        probability = self.probability[ids.to(torch.int64)] * batch_size
        return torch.log(probability.clamp(max=1.0)).to(torch.float32)


LOGQ_OPTIONS = ("sketch", "exact", "none")


def frequency_estimator(option: str, train_pins: np.ndarray, num_pins: int) -> nn.Module | None:
    """The logQ estimator a `train.logq` option names.

    Args:
        option: "sketch" (streaming count-min sketch), "exact" (training-window counts) or "none".
        train_pins: the pin of every training example (read by "exact" only).
        num_pins: size of the pin id space.
    """
    if option not in LOGQ_OPTIONS:
        raise ValueError(f"train.logq={option!r} is not one of {list(LOGQ_OPTIONS)}")
    if option == "sketch":
        return CountMinSketch()
    if option == "exact":
        return ExactFrequency(train_pins, num_pins)
    return None
