"""Sampled softmax over in-batch (and optional random) negatives with logQ correction."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SampledSoftmaxLoss(nn.Module):
    """Retrieval as extreme classification over the batch's pins.

    logits[i, j] = scale * <u_i, p_j> - log Q(p_j), where Q is the probability that pin j is in
    the batch (Yi et al., RecSys 2019). Negatives that are the same pin as example i's positive
    are masked out. Random negatives (mixed negatives) append columns with their own log Q.

    Args:
        temperature: initial temperature; the learnable scale is 1 / temperature.
        max_scale: the scale is clamped at this value (100: temperature never below 0.01).
        learn_temperature: make the scale a trainable parameter.
    """

    def __init__(self, temperature: float = 0.05, max_scale: float = 100.0, learn_temperature: bool = True):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"loss.temperature must be positive, got {temperature}")
        if max_scale <= 0:
            raise ValueError(f"loss.max_scale must be positive, got {max_scale}")
        self.max_scale = max_scale
        self.log_scale = nn.Parameter(
            torch.tensor(math.log(1.0 / temperature)), requires_grad=learn_temperature
        )

    @property
    def scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=self.max_scale)

    def forward(
        self,
        user: torch.Tensor,
        pin: torch.Tensor,
        pin_ids: torch.Tensor,
        log_q: torch.Tensor | None = None,
        negatives: torch.Tensor | None = None,
        negative_ids: torch.Tensor | None = None,
        negative_log_q: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean cross-entropy of each user against its engaged pin.

        Args:
            user: (B, d) user embeddings.
            pin: (B, d) embeddings of each example's engaged pin.
            pin_ids: (B,) ids of those pins (for masking duplicates).
            log_q: (B,) log probability that each in-batch pin is sampled, or None (no correction).
            negatives: (M, d) random negatives' embeddings, or None.
            negative_ids: (M,) their ids.
            negative_log_q: (M,) their log sampling probability.
        """
        scale = self.scale
        logits = scale * user @ pin.T
        if log_q is not None:
            logits = logits - log_q.unsqueeze(0)
        duplicate = pin_ids.unsqueeze(0) == pin_ids.unsqueeze(1)
        duplicate.fill_diagonal_(False)
        logits = logits.masked_fill(duplicate, float("-inf"))
        if negatives is not None:
            if negative_ids is None:
                raise ValueError("negatives given without negative_ids")
            extra = scale * user @ negatives.T
            if negative_log_q is not None:
                extra = extra - negative_log_q.unsqueeze(0)
            extra = extra.masked_fill(negative_ids.unsqueeze(0) == pin_ids.unsqueeze(1), float("-inf"))
            logits = torch.cat([logits, extra], dim=1)
        target = torch.arange(user.shape[0], device=user.device)
        return F.cross_entropy(logits, target)
