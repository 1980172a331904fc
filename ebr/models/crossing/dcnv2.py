"""DCN-V2 crossing (Wang et al., arXiv 2008.13535) on torchrec's own cross networks.

The cross network is torchrec's `LowRankCrossNet` (one low-rank expert), `LowRankMixtureCrossNet`
(several experts mixed by a gate) or the full-rank `CrossNet`; this module only wires it with an
MLP, stacked (MLP after the cross network) or parallel (both read the input, outputs concatenated).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchrec.modules.crossnet import CrossNet, LowRankCrossNet, LowRankMixtureCrossNet

from ebr.models.crossing.mlp import mlp_layers

STRUCTURES = ("stacked", "parallel")


class DCNv2Crossing(nn.Module):
    """Cross network plus MLP, stacked or parallel.

    Args:
        num_fields: number of feature fields in the input.
        field_dim: width of each field.
        num_cross_layers: number of cross layers.
        low_rank: rank of each cross matrix; None uses torchrec's full-rank `CrossNet` (only with a
            single expert). The DCN-V2 paper finds about a quarter of the input width enough.
        num_experts: 1 uses `LowRankCrossNet`; more uses `LowRankMixtureCrossNet` with that many
            low-rank experts per layer.
        structure: "stacked" (output = MLP(cross(x))) or "parallel"
            (output = concat(cross(x), MLP(x))).
        hidden: widths of the MLP; empty means no MLP (stacked: the output is cross(x)).
        dropout: dropout after each MLP activation.
    """

    def __init__(
        self,
        num_fields: int,
        field_dim: int,
        num_cross_layers: int = 3,
        low_rank: int | None = 64,
        num_experts: int = 1,
        structure: str = "stacked",
        hidden: Sequence[int] = (512, 256),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if num_fields <= 0:
            raise ValueError(f"DCNv2Crossing.num_fields must be positive, got {num_fields}")
        if field_dim <= 0:
            raise ValueError(f"DCNv2Crossing.field_dim must be positive, got {field_dim}")
        if num_cross_layers <= 0:
            raise ValueError(f"DCNv2Crossing.num_cross_layers must be positive, got {num_cross_layers}")
        if low_rank is not None and low_rank <= 0:
            raise ValueError(f"DCNv2Crossing.low_rank must be positive or null, got {low_rank}")
        if num_experts <= 0:
            raise ValueError(f"DCNv2Crossing.num_experts must be positive, got {num_experts}")
        if low_rank is None and num_experts > 1:
            raise ValueError(
                f"DCNv2Crossing.num_experts={num_experts} needs a low_rank (mixtures are low-rank only)"
            )
        if structure not in STRUCTURES:
            raise ValueError(f"DCNv2Crossing.structure must be one of {STRUCTURES}, got {structure!r}")
        hidden = list(hidden)
        if any(width <= 0 for width in hidden):
            raise ValueError(f"DCNv2Crossing.hidden must contain positive widths, got {hidden}")
        if structure == "parallel" and not hidden:
            raise ValueError("DCNv2Crossing.hidden must be non-empty when structure is 'parallel'")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"DCNv2Crossing.dropout must be in [0, 1), got {dropout}")

        self.input_dim = num_fields * field_dim
        self.structure = structure
        self.cross: nn.Module
        if low_rank is None:
            self.cross = CrossNet(self.input_dim, num_cross_layers)
        elif num_experts == 1:
            self.cross = LowRankCrossNet(self.input_dim, num_cross_layers, low_rank=low_rank)
        else:
            self.cross = LowRankMixtureCrossNet(
                self.input_dim, num_cross_layers, num_experts=num_experts, low_rank=low_rank
            )
        # the cross network keeps the input width, so the MLP reads that width in both structures
        self.mlp = mlp_layers(self.input_dim, hidden, dropout)
        mlp_out = hidden[-1] if hidden else self.input_dim
        self.output_dim = mlp_out if structure == "stacked" else self.input_dim + mlp_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.input_dim:
            raise ValueError(
                f"DCNv2Crossing expects input of shape (batch, num_fields * field_dim = {self.input_dim}), "
                f"got {tuple(x.shape)}"
            )
        if self.structure == "stacked":
            return self.mlp(self.cross(x))
        return torch.cat([self.cross(x), self.mlp(x)], dim=-1)
