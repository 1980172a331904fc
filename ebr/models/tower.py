"""One tower of a two-tower model: features -> LayerNorm -> crossing -> projection -> L2 norm."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

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
        id_feature: the entity-ID feature (one of `sparse`) whose table is a separate, pre-trained
            ID table (`model/id_embedding=pretrained`): its own collection, looked up through a
            raw id -> row mapping with one learned "unknown" row; None keeps every feature in the
            one shared collection (`scratch`, `none`).
        id_rows: rows of that separate ID table (the snapshot's rows of this side).
    """

    name: str
    sparse: dict[str, int]
    dense_dim: int = 0
    id_feature: str | None = None
    id_rows: int = 0


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
    by the trainer); dense features through a small MLP into one more field. A pre-trained ID
    feature (`spec.id_feature`) has its own collection `id_ebc`, so that the trainer chooses its
    optimizer and sharding apart from the other tables: frozen (`id_freeze`), its weights have
    `requires_grad=False` and get neither a fused optimizer nor a sharding plan.

    Args:
        spec: the tower's input features.
        crossing: builds the crossing module given num_fields and field_dim.
        embedding_dim: width of every field (embedding tables and the dense field).
        output_dim: width of the final embedding d.
        dense_hidden: hidden widths of the dense-feature MLP.
        id_freeze: freeze the separate ID table (no gradient, no optimizer state).
        id_dropout: probability of replacing an example's whole ID vector by zeros in training
            (each example independently; never in eval mode, so never at serving).
    """

    # fields a subclass adds after the features' (the sequence tower's encoded sequence)
    EXTRA_FIELDS: ClassVar[int] = 0

    def __init__(
        self,
        spec: TowerSpec,
        crossing: CrossingFactory,
        embedding_dim: int = 32,
        output_dim: int = 64,
        dense_hidden: Sequence[int] = (64,),
        id_freeze: bool = False,
        id_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not spec.sparse and spec.dense_dim == 0 and not self.EXTRA_FIELDS:
            raise ValueError(f"{spec.name} tower has no input features")
        if embedding_dim <= 0 or output_dim <= 0:
            raise ValueError(
                "model.embedding_dim and model.output_dim must be positive, "
                f"got {embedding_dim}, {output_dim}"
            )
        if not 0.0 <= id_dropout < 1.0:
            raise ValueError(f"model.id_embedding.dropout must be in [0, 1), got {id_dropout}")
        self.spec = spec
        self.feature_names = list(spec.sparse)
        shared = {f: c for f, c in spec.sparse.items() if f != spec.id_feature}
        # no collection without tables (torchrec refuses one) unless it is today's only collection
        self.ebc = (
            EmbeddingBagCollection(
                tables=[
                    EmbeddingBagConfig(
                        name=f"{spec.name}__{feature}",
                        embedding_dim=embedding_dim,
                        num_embeddings=max(int(cardinality), 1),
                        feature_names=[feature],
                        # the input's per-value weights make each bag a weighted average (ebr.data.batching)
                        pooling=PoolingType.SUM,
                    )
                    for feature, cardinality in shared.items()
                ],
                is_weighted=True,
            )
            if shared or spec.id_feature is None
            else None
        )
        self.id_dropout = float(id_dropout)
        # fields replaced by zeros (what ID dropout does to a dropped example) in every mode: a
        # diagnostic switch (`ablate_fields`), not state, so model.pt never carries it
        self.ablated_fields: frozenset[str] = frozenset()
        self.id_ebc = self._id_tables(spec, embedding_dim, id_freeze) if spec.id_feature else None
        self.dense_mlp = (
            nn.Sequential(
                mlp_layers(spec.dense_dim, [*dense_hidden]), nn.Linear(dense_hidden[-1], embedding_dim)
            )
            if spec.dense_dim
            else None
        )
        num_fields = len(spec.sparse) + (1 if spec.dense_dim else 0) + self.EXTRA_FIELDS
        self.num_fields = num_fields
        self.embedding_dim = embedding_dim
        self.field_norm = FieldLayerNorm(num_fields, embedding_dim)
        self.crossing = crossing(num_fields=num_fields, field_dim=embedding_dim)
        self.projection = nn.Linear(self.crossing.output_dim, output_dim)
        self.output_dim = output_dim

    def _id_tables(self, spec: TowerSpec, embedding_dim: int, freeze: bool) -> EmbeddingBagCollection:
        """The separate ID table, its raw id -> row mapping and its learned unknown row.

        Args:
            spec: the tower spec (with `id_feature`, `id_rows`).
            embedding_dim: the table width.
            freeze: set `requires_grad=False` on the table.
        """
        if spec.id_feature not in spec.sparse:
            raise ValueError(f"{spec.name} tower: ID feature {spec.id_feature!r} is not one of its features")
        if spec.id_rows < 1:
            raise ValueError(f"{spec.name} tower: the pre-trained ID table needs rows, got {spec.id_rows}")
        id_ebc = EmbeddingBagCollection(
            tables=[
                EmbeddingBagConfig(
                    name=f"{spec.name}__{spec.id_feature}",
                    embedding_dim=embedding_dim,
                    num_embeddings=int(spec.id_rows),
                    feature_names=[spec.id_feature],
                    pooling=PoolingType.SUM,  # one id per bag: the row itself
                )
            ],
            is_weighted=False,
        )
        if freeze:
            for parameter in id_ebc.parameters():
                parameter.requires_grad_(False)
        # raw id -> table row, -1 for an id the snapshot never saw (set by the snapshot loader; a
        # buffer, so model.pt carries it and serving needs no snapshot)
        self.register_buffer(
            "id_rows", torch.full((max(int(spec.sparse[spec.id_feature]), 1),), -1, dtype=torch.int64)
        )
        # the unknown row is dense (the Lightning optimizer learns it) even when the table is frozen
        self.id_unknown = nn.Parameter(torch.zeros(embedding_dim))
        return id_ebc

    def id_field(self, sparse: KeyedJaggedTensor) -> torch.Tensor:
        """The (batch, embedding_dim) ID vectors: the snapshot row, or the unknown row; dropped
        (zeros) with probability `id_dropout` per example in training mode only.

        Args:
            sparse: the tower's categorical input (the ID feature: one raw id per row).
        """
        feature = sparse[self.spec.id_feature]
        lengths = feature.lengths()
        if not bool((lengths == 1).all()):
            raise ValueError(f"{self.spec.name} tower: the ID feature must hold one id per row")
        rows = self.id_rows[feature.values().long()]
        known = rows >= 0
        pooled = self.id_ebc(
            KeyedJaggedTensor.from_lengths_sync(
                keys=[self.spec.id_feature], values=rows.clamp(min=0), lengths=lengths
            )
        ).to_dict()[self.spec.id_feature]
        field = torch.where(known.unsqueeze(1), pooled, self.id_unknown.to(pooled.dtype).expand_as(pooled))
        if self.training and self.id_dropout > 0:
            # the whole vector or nothing; no 1/(1-p) rescaling: the field LayerNorm that follows
            # is scale-invariant, and a dropped field becomes the LayerNorm's bias
            keep = torch.rand(field.shape[0], 1, device=field.device) >= self.id_dropout
            field = field * keep.to(field.dtype)
        return field

    def fields(self, sparse: KeyedJaggedTensor, dense: torch.Tensor) -> torch.Tensor:
        """The (batch, num_fields, embedding_dim) field tensor before normalisation."""
        parts = []
        if self.feature_names:
            pooled = {}
            if self.id_ebc is not None:
                pooled[self.spec.id_feature] = self.id_field(sparse)
                keys = sparse.keys()
                shared = [keys.index(name) for name in keys if name != self.spec.id_feature]
                # the shared collection sees its own keys only (a sharded one plans for exactly those)
                sparse = sparse.permute(shared) if shared else None
            if self.ebc is not None and sparse is not None:
                pooled.update(self.ebc(sparse).to_dict())
            parts += [
                torch.zeros_like(pooled[name]) if name in self.ablated_fields else pooled[name]
                for name in self.feature_names
            ]
        if self.dense_mlp is not None:
            parts.append(self.dense_mlp(dense))
        return torch.stack(parts, dim=1)

    def encode(self, fields: torch.Tensor) -> torch.Tensor:
        """Normalise, cross, project and L2-normalise a field tensor."""
        x = self.field_norm(fields).flatten(1)
        return F.normalize(self.projection(self.crossing(x)), dim=-1)

    def forward(self, sparse: KeyedJaggedTensor, dense: torch.Tensor) -> torch.Tensor:
        return self.encode(self.fields(sparse, dense))


class ablate_fields:  # noqa: N801 - used as a context manager, like torch.no_grad
    """Within the block, every Tower of `model` (sharded or wrapped included) replaces the
    fields of the named sparse features by zeros, as a dropped ID vector is.

    Args:
        model: a module holding Towers.
        features: sparse feature names (those a tower does not read are ignored).
    """

    def __init__(self, model: nn.Module, features: frozenset[str] | set[str]) -> None:
        self.towers = [m for m in model.modules() if isinstance(m, Tower)]
        self.features = frozenset(features)

    def __enter__(self) -> None:
        for tower in self.towers:
            tower.ablated_fields = self.features & set(tower.feature_names)

    def __exit__(self, *exc: object) -> None:
        for tower in self.towers:
            tower.ablated_fields = frozenset()
