"""MaskNet crossing (Wang et al., arXiv 2102.07619): parallel as Pinterest runs it, and serial.

Both variants are built from the same `MaskBlock`: an instance-guided mask (a small MLP of the
embedding layer) multiplies a hidden input element-wise, then Linear (no bias) - LayerNorm - ReLU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ebr.models.crossing.mlp import mlp_layers


def _check_common(
    owner: str, num_fields: int, field_dim: int, num_blocks: int, block_dim: int, dropout: float
) -> None:
    """Shared constructor checks of the two MaskNet variants; each error names the bad argument."""
    if num_fields <= 0:
        raise ValueError(f"{owner}.num_fields must be positive, got {num_fields}")
    if field_dim <= 0:
        raise ValueError(f"{owner}.field_dim must be positive, got {field_dim}")
    if num_blocks <= 0:
        raise ValueError(f"{owner}.num_blocks must be positive, got {num_blocks}")
    if block_dim <= 0:
        raise ValueError(f"{owner}.block_dim must be positive, got {block_dim}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{owner}.dropout must be in [0, 1), got {dropout}")


def _check_hidden(owner: str, hidden: Sequence[int]) -> list[int]:
    hidden = list(hidden)
    if any(width <= 0 for width in hidden):
        raise ValueError(f"{owner}.hidden must contain positive widths, got {hidden}")
    return hidden


def _check_input(owner: str, x: torch.Tensor, expected: int) -> None:
    if x.dim() != 2 or x.shape[1] != expected:
        raise ValueError(
            f"{owner} expects input of shape (batch, num_fields * field_dim = {expected}), "
            f"got {tuple(x.shape)}"
        )


class MaskBlock(nn.Module):
    """One MaskBlock: ReLU(LayerNorm(W (mask(v_emb) * v_hidden))), W without bias.

    The mask is Linear - ReLU - Linear of the mask input ("instance-guided": it is recomputed for
    every example); its inner width is `projection_ratio * mask_input_dim` (the paper's reduction
    ratio) and its output width equals the hidden input's width so the product is element-wise.

    Args:
        mask_input_dim: width of the mask's input (the embedding layer in both MaskNet variants).
        hidden_input_dim: width of the input the mask multiplies.
        output_dim: width of the block's output.
        projection_ratio: inner width of the mask MLP as a multiple of `mask_input_dim` (> 0).
        dropout: dropout after the block's activation (0 disables it).
    """

    def __init__(
        self,
        mask_input_dim: int,
        hidden_input_dim: int,
        output_dim: int,
        projection_ratio: float = 0.5,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if projection_ratio <= 0:
            raise ValueError(f"MaskBlock.projection_ratio must be > 0, got {projection_ratio}")
        inner = round(projection_ratio * mask_input_dim)
        if inner < 1:
            raise ValueError(
                f"MaskBlock.projection_ratio={projection_ratio} gives an empty mask layer for "
                f"mask_input_dim={mask_input_dim}; raise projection_ratio"
            )
        if min(mask_input_dim, hidden_input_dim, output_dim) <= 0:
            raise ValueError(
                "MaskBlock widths must be positive, got mask_input_dim="
                f"{mask_input_dim}, hidden_input_dim={hidden_input_dim}, output_dim={output_dim}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MaskBlock.dropout must be in [0, 1), got {dropout}")
        self.mask_net = nn.Sequential(
            nn.Linear(mask_input_dim, inner), nn.ReLU(), nn.Linear(inner, hidden_input_dim)
        )
        # no bias: the LayerNorm right after would cancel it
        self.hidden = nn.Linear(hidden_input_dim, output_dim, bias=False)
        self.norm = nn.LayerNorm(output_dim)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.output_dim = output_dim

    def mask(self, mask_input: torch.Tensor) -> torch.Tensor:
        """The instance-guided mask, shape (batch, hidden_input_dim)."""
        return self.mask_net(mask_input)

    def forward(self, mask_input: torch.Tensor, hidden_input: torch.Tensor) -> torch.Tensor:
        masked = self.mask(mask_input) * hidden_input
        return self.dropout(torch.relu(self.norm(self.hidden(masked))))


class ParallelMaskNet(nn.Module):
    """Parallel MaskNet: k MaskBlocks on the same input, concatenated, then a bottleneck MLP.

    Every block uses the LayerNormed field concatenation both as mask input and as hidden input,
    as in Pinterest's Homefeed retrieval towers (KDD'25 appendix: 4 blocks of width 128,
    projection ratio 0.5).

    Args:
        num_fields: number of feature fields in the input.
        field_dim: width of each field.
        num_blocks: number of parallel MaskBlocks (k).
        block_dim: output width of each block.
        projection_ratio: mask MLP inner width as a multiple of the input width.
        hidden: widths of the bottleneck MLP after the concatenated blocks; empty means none, and
            the output is the concatenation itself.
        dropout: dropout after each block and each MLP activation.
    """

    def __init__(
        self,
        num_fields: int,
        field_dim: int,
        num_blocks: int = 4,
        block_dim: int = 128,
        projection_ratio: float = 0.5,
        hidden: Sequence[int] = (512, 256),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check_common("ParallelMaskNet", num_fields, field_dim, num_blocks, block_dim, dropout)
        if projection_ratio <= 0:
            raise ValueError(f"ParallelMaskNet.projection_ratio must be > 0, got {projection_ratio}")
        hidden = _check_hidden("ParallelMaskNet", hidden)
        self.input_dim = num_fields * field_dim
        self.blocks = nn.ModuleList(
            MaskBlock(self.input_dim, self.input_dim, block_dim, projection_ratio, dropout)
            for _ in range(num_blocks)
        )
        self.mlp = mlp_layers(num_blocks * block_dim, hidden, dropout)
        self.output_dim = hidden[-1] if hidden else num_blocks * block_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input("ParallelMaskNet", x, self.input_dim)
        # k is small (4 by default): a loop over blocks, not over examples
        blocks = torch.cat([block(x, x) for block in self.blocks], dim=-1)
        return self.mlp(blocks)


class SerialMaskNet(nn.Module):
    """Serial MaskNet of the original paper: MaskBlocks stacked one after another.

    The mask input of every block is the embedding layer (the LayerNormed field concatenation);
    the hidden input of the first block is the embedding layer too, that of block i > 0 is the
    output of block i - 1. The paper feeds the last block straight to the prediction layer, so
    the default has no MLP after it.

    Args:
        num_fields: number of feature fields in the input.
        field_dim: width of each field.
        num_blocks: number of stacked MaskBlocks.
        block_dim: output width of each block.
        projection_ratio: mask MLP inner width as a multiple of the input width (the paper's
            reduction ratio, 2 by default there).
        hidden: widths of an optional MLP after the last block (empty: none).
        dropout: dropout after each block and each MLP activation.
    """

    def __init__(
        self,
        num_fields: int,
        field_dim: int,
        num_blocks: int = 3,
        block_dim: int = 128,
        projection_ratio: float = 2.0,
        hidden: Sequence[int] = (),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check_common("SerialMaskNet", num_fields, field_dim, num_blocks, block_dim, dropout)
        if projection_ratio <= 0:
            raise ValueError(f"SerialMaskNet.projection_ratio must be > 0, got {projection_ratio}")
        hidden = _check_hidden("SerialMaskNet", hidden)
        self.input_dim = num_fields * field_dim
        hidden_inputs = [self.input_dim] + [block_dim] * (num_blocks - 1)
        self.blocks = nn.ModuleList(
            MaskBlock(self.input_dim, width, block_dim, projection_ratio, dropout) for width in hidden_inputs
        )
        self.mlp = mlp_layers(block_dim, hidden, dropout)
        self.output_dim = hidden[-1] if hidden else block_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input("SerialMaskNet", x, self.input_dim)
        h = x
        for block in self.blocks:
            h = block(x, h)
        return self.mlp(h)
