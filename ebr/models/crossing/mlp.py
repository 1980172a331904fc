"""The baseline crossing: a plain MLP over the concatenated feature fields."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def mlp_layers(in_dim: int, widths: Sequence[int], dropout: float = 0.0) -> nn.Sequential:
    """Linear - ReLU (- Dropout) blocks of the given widths.

    Args:
        in_dim: input width.
        widths: output width of each block, in order.
        dropout: dropout probability after each activation (0 disables it).
    """
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Linear(in_dim, width), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        in_dim = width
    return nn.Sequential(*layers)


class MLPCrossing(nn.Module):
    """Crossing by a multi-layer perceptron; the reference every other option is compared with.

    Args:
        num_fields: number of feature fields in the input.
        field_dim: width of each field.
        hidden: widths of the hidden layers (at least one).
        dropout: dropout after each hidden activation.
    """

    def __init__(
        self, num_fields: int, field_dim: int, hidden: Sequence[int] = (256, 128), dropout: float = 0.0
    ) -> None:
        super().__init__()
        hidden = list(hidden)
        if not hidden or min(hidden) <= 0:
            raise ValueError(f"MLPCrossing.hidden must be a non-empty list of positive widths, got {hidden}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MLPCrossing.dropout must be in [0, 1), got {dropout}")
        self.layers = mlp_layers(num_fields * field_dim, hidden, dropout)
        self.output_dim = hidden[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
