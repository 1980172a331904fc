"""`model/negatives`: random negatives mixed into the in-batch softmax (docs/negatives.md).

- `none` (the default): each example's softmax runs over the batch's other engaged pins only;
- `uniform`: every batch also scores `num_negatives` pins drawn uniformly (with replacement) from
  the negative pool, the training window's corpus the job hands the trainer ("mixed negatives",
  Yang et al. 2020). Their logQ correction is the uniform draw's `log(num_negatives / pool size)`.

A part is built by Hydra from its config group, before the data is known; `bind(pool)` gives
the draws of one training (None: no random negatives), which the data module calls once per
global batch and the Lightning module asks for the negatives' logQ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


def uniform_log_q(num_negatives: int, pool_size: int) -> float:
    """log P(a pin is among `num_negatives` uniform draws from a pool of `pool_size`).

    Args:
        num_negatives: draws per batch.
        pool_size: pins drawn from.
    """
    return math.log(min(1.0, num_negatives / max(pool_size, 1)))


@dataclass(frozen=True)
class UniformDraws:
    """`num_negatives` uniform draws per batch from one pool: what a training's batches carry.

    Args:
        pool: the pin ids drawn from.
        num_negatives: draws per batch.
    """

    pool: np.ndarray
    num_negatives: int

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """One batch's negatives (the batch's generator: a pass's draws follow its shuffle).

        Args:
            rng: the pass's generator.
        """
        return self.pool[rng.integers(0, len(self.pool), self.num_negatives)]

    def log_q(self, count: int, device: torch.device) -> torch.Tensor:
        """The logQ correction of each of `count` drawn negatives.

        Args:
            count: negatives in the batch.
            device: where the loss runs.
        """
        return torch.full((count,), uniform_log_q(count, len(self.pool)), device=device)


@dataclass(frozen=True)
class NoNegatives:
    """`model/negatives=none`: in-batch negatives only."""

    def bind(self, pool: np.ndarray) -> UniformDraws | None:
        """No draws, whatever the pool.

        Args:
            pool: the negative pool (unused).
        """
        return None


@dataclass(frozen=True)
class UniformNegatives:
    """`model/negatives=uniform`: `num_negatives` pins per batch drawn uniformly from the pool.

    Args:
        num_negatives: draws per batch, shared by the batch's examples (0: none, as `none`; kept so
            that a search may sweep it through 0).
    """

    num_negatives: int = 1024

    def __post_init__(self) -> None:
        if isinstance(self.num_negatives, bool) or not isinstance(self.num_negatives, int):
            raise ValueError(f"model.negatives.num_negatives must be an integer, got {self.num_negatives!r}")
        if self.num_negatives < 0:
            raise ValueError(f"model.negatives.num_negatives must be >= 0, got {self.num_negatives}")

    def bind(self, pool: np.ndarray) -> UniformDraws | None:
        """The draws of one training (None when there is nothing to draw or from).

        Args:
            pool: the pins drawn from (the training window's corpus).
        """
        if self.num_negatives == 0 or pool is None or not len(pool):
            return None
        return UniformDraws(pool, self.num_negatives)
