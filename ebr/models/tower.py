"""One tower of a two-tower model: features -> LayerNorm -> crossing -> projection -> L2 norm."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from ebr.models.crossing.mlp import mlp_layers

CrossingFactory = Callable[..., nn.Module]


@dataclass(frozen=True)
class TowerSpec:
    """What a tower eats: categorical features with their cardinalities, and the dense width.

    Args:
        name: "user" or "pin"; prefixes the embedding-table names.
        sparse: categorical feature name -> number of ids (table rows), in input order.
        dense_dim: number of dense input columns (0 for none).
    """

    name: str
    sparse: dict[str, int]
    dense_dim: int = 0


class FieldLayerNorm(nn.Module):
    """LayerNorm of each feature field separately, each with its own affine parameters."""

    def __init__(self, num_fields: int, field_dim: int) -> None:
        super().__init__()
        self.field_dim = field_dim
        self.weight = nn.Parameter(torch.ones(num_fields, field_dim))
        self.bias = nn.Parameter(torch.zeros(num_fields, field_dim))

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        normed = F.layer_norm(fields, (self.field_dim,))
        return normed * self.weight + self.bias


class Tower(nn.Module):
    """Encodes one side (users or pins) into L2-normalised embeddings of width `output_dim`.

    Categorical features go through a torchrec EmbeddingBagCollection (sharded and fused
    by the trainer); dense features through a small MLP into one more field.

    Args:
        spec: the tower's input features.
        crossing: builds the crossing module given num_fields and field_dim.
        embedding_dim: width of every field (embedding tables and the dense field).
        output_dim: width of the final embedding d.
        dense_hidden: hidden widths of the dense-feature MLP.
    """

    def __init__(
        self,
        spec: TowerSpec,
        crossing: CrossingFactory,
        embedding_dim: int = 32,
        output_dim: int = 64,
        dense_hidden: Sequence[int] = (64,),
    ) -> None:
        super().__init__()
        if not spec.sparse and spec.dense_dim == 0:
            raise ValueError(f"{spec.name} tower has no input features")
        if embedding_dim <= 0 or output_dim <= 0:
            raise ValueError(
                "model.embedding_dim and model.output_dim must be positive, "
                f"got {embedding_dim}, {output_dim}"
            )
        self.spec = spec
        self.feature_names = list(spec.sparse)
        self.ebc = EmbeddingBagCollection(
            tables=[
                EmbeddingBagConfig(
                    name=f"{spec.name}__{feature}",
                    embedding_dim=embedding_dim,
                    num_embeddings=max(int(cardinality), 1),
                    feature_names=[feature],
                    # the input's per-value weights make each bag a weighted average (ebr.data.batching)
                    pooling=PoolingType.SUM,
                )
                for feature, cardinality in spec.sparse.items()
            ],
            is_weighted=True,
        )
        self.dense_mlp = (
            nn.Sequential(
                mlp_layers(spec.dense_dim, [*dense_hidden]), nn.Linear(dense_hidden[-1], embedding_dim)
            )
            if spec.dense_dim
            else None
        )
        num_fields = len(spec.sparse) + (1 if spec.dense_dim else 0)
        self.num_fields = num_fields
        self.embedding_dim = embedding_dim
        self.field_norm = FieldLayerNorm(num_fields, embedding_dim)
        self.crossing = crossing(num_fields=num_fields, field_dim=embedding_dim)
        self.projection = nn.Linear(self.crossing.output_dim, output_dim)
        self.output_dim = output_dim

    def fields(self, sparse: KeyedJaggedTensor, dense: torch.Tensor) -> torch.Tensor:
        """The (batch, num_fields, embedding_dim) field tensor before normalisation."""
        parts = []
        if self.feature_names:
            pooled = self.ebc(sparse).to_dict()
            parts += [pooled[name] for name in self.feature_names]
        if self.dense_mlp is not None:
            parts.append(self.dense_mlp(dense))
        return torch.stack(parts, dim=1)

    def encode(self, fields: torch.Tensor) -> torch.Tensor:
        """Normalise, cross, project and L2-normalise a field tensor."""
        x = self.field_norm(fields).flatten(1)
        return F.normalize(self.projection(self.crossing(x)), dim=-1)

    def forward(self, sparse: KeyedJaggedTensor, dense: torch.Tensor) -> torch.Tensor:
        return self.encode(self.fields(sparse, dense))
