"""A Transformer encoder over feature-field tokens (the DHEN "transformer" module).

Field i of the input occupies columns i*field_dim:(i+1)*field_dim; it becomes token i after its
own linear projection to the common width. The per-field projections (and their biases, which act
as learned field embeddings) tell the encoder which field a token came from, so no positional
encoding is needed. The output keeps the token view: num_fields tokens of width `width`,
flattened field-major like the input.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class FieldTransformer(nn.Module):
    """Pre-norm Transformer encoder over one token per feature field.

    Args:
        num_fields: number of feature fields (= tokens).
        field_dim: width of each field in the input.
        layers: number of encoder layers.
        width: token width inside the encoder (d_model).
        heads: attention heads; must divide `width`.
        ffn_dim: width of the feed-forward sublayer; None means 4 * width.
        dropout: dropout inside the encoder layers.
    """

    def __init__(
        self,
        num_fields: int,
        field_dim: int,
        layers: int = 2,
        width: int = 256,
        heads: int = 4,
        ffn_dim: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if num_fields <= 0:
            raise ValueError(f"FieldTransformer.num_fields must be positive, got {num_fields}")
        if field_dim <= 0:
            raise ValueError(f"FieldTransformer.field_dim must be positive, got {field_dim}")
        if layers <= 0:
            raise ValueError(f"FieldTransformer.layers must be positive, got {layers}")
        if heads <= 0:
            raise ValueError(f"FieldTransformer.heads must be positive, got {heads}")
        if width <= 0 or width % heads != 0:
            raise ValueError(
                f"FieldTransformer.width must be a positive multiple of heads={heads}, got {width}"
            )
        if ffn_dim is not None and ffn_dim <= 0:
            raise ValueError(f"FieldTransformer.ffn_dim must be positive or null, got {ffn_dim}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"FieldTransformer.dropout must be in [0, 1), got {dropout}")
        self.num_fields = num_fields
        self.field_dim = field_dim
        bound = 1.0 / math.sqrt(field_dim)  # nn.Linear's default initialisation range
        self.proj_weight = nn.Parameter(torch.empty(num_fields, field_dim, width).uniform_(-bound, bound))
        # small random biases so fields with identical inputs still give distinct tokens
        self.proj_bias = nn.Parameter(torch.randn(num_fields, width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model=width,
            nhead=heads,
            dim_feedforward=ffn_dim if ffn_dim is not None else 4 * width,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        # pre-norm layers leave the residual stream unnormalised, hence the final LayerNorm
        self.encoder = nn.TransformerEncoder(
            layer, num_layers=layers, norm=nn.LayerNorm(width), enable_nested_tensor=False
        )
        self.output_token_dim = width
        self.output_dim = num_fields * width

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Projects the flat input (batch, num_fields * field_dim) to tokens (batch, num_fields, width)."""
        expected = self.num_fields * self.field_dim
        if x.dim() != 2 or x.shape[1] != expected:
            raise ValueError(
                f"FieldTransformer expects input of shape (batch, num_fields * field_dim = {expected}), "
                f"got {tuple(x.shape)}"
            )
        fields = x.reshape(x.shape[0], self.num_fields, self.field_dim)
        return torch.einsum("bfi,fio->bfo", fields, self.proj_weight) + self.proj_bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.tokens(x)).flatten(1)
