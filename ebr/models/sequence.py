"""The sequence user tower (`model/user_encoder=sequence`): the user's last N engagements through a
causal Transformer, pooled into one more user field (PinnerFormer, SASRec).

Each position's input is the sum of its pin's embedding (the encoder's own torchrec table, or the
pin tower's ID table: `pin_table=shared`), its action type's, its time-gap bucket's
(ebr.data.sequences) and its position's (0: the oldest of the window; counted from the oldest so
that a position's state depends on nothing after it, as the dense objective needs). Sequences are
right-padded: with the causal mask a position attends to itself and earlier positions only, so a
real position never sees a pad and its output is that of the unpadded sequence. The pooled state
(the newest position's, or an attention pooling over the real positions) is projected to the field
width; a user without engagements gets a learned "empty" state instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch import nn
from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.sparse.jagged_tensor import JaggedTensor, KeyedJaggedTensor

from ebr.data.sequences import (
    ACTIONS,
    GAP_BUCKETS,
    SEQUENCE_ACTION,
    SEQUENCE_FEATURES,
    SEQUENCE_GAP,
    SEQUENCE_PIN,
)
from ebr.models.tower import CrossingFactory, Tower, TowerSpec

POOLINGS = ("last", "attention")
PIN_TABLES = ("own", "shared")
PinLookup = Callable[[torch.Tensor], torch.Tensor]


class SequenceEncoder(nn.Module):
    """Padded sequences of (pin, action, gap) ids -> per-position states and a pooled field.

    Args:
        field_dim: the width of the field it produces (the tower's `embedding_dim`).
        pin_rows: rows of its own pin table (the data's pins).
        length: positions a sequence holds (N).
        layers: Transformer layers.
        heads: attention heads (must divide `width`).
        width: the Transformer's width.
        dropout: dropout inside the Transformer (training only).
        options: `pooling` (last | attention) and `pin_table` (own | shared).
    """

    def __init__(
        self,
        field_dim: int,
        pin_rows: int,
        length: int = 50,
        layers: int = 2,
        heads: int = 2,
        width: int = 64,
        dropout: float = 0.1,
        options: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        options = dict(options or {})
        self.pooling = options.get("pooling", "last")
        self.pin_table = options.get("pin_table", "own")
        if self.pooling not in POOLINGS or self.pin_table not in PIN_TABLES:
            raise ValueError(
                f"model.user_encoder: pooling must be one of {POOLINGS} and pin_table one of {PIN_TABLES},"
                f" got {self.pooling!r}, {self.pin_table!r}"
            )
        if length < 1 or layers < 1 or width < 1 or heads < 1 or width % heads:
            raise ValueError(
                "model.user_encoder: length, layers, heads, width must be positive and heads divide width,"
                f" got {length}, {layers}, {heads}, {width}"
            )
        self.length, self.width = int(length), int(width)
        self.pins = None
        pin_dim = field_dim
        if self.pin_table == "own":
            pin_dim = width
            self.pins = EmbeddingBagCollection(
                tables=[
                    EmbeddingBagConfig(
                        name=f"sequence__{SEQUENCE_PIN}",
                        embedding_dim=width,
                        num_embeddings=max(int(pin_rows), 1),
                        feature_names=[SEQUENCE_PIN],
                        pooling=PoolingType.SUM,  # one id per bag: the row itself
                    )
                ],
                is_weighted=False,
            )
        self.pin_projection = nn.Linear(pin_dim, width) if pin_dim != width else nn.Identity()
        self.actions = nn.Embedding(ACTIONS, width)
        self.gaps = nn.Embedding(GAP_BUCKETS, width)
        self.positions = nn.Embedding(self.length, width)
        layer = nn.TransformerEncoderLayer(
            width, heads, 4 * width, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.query = nn.Parameter(torch.zeros(width)) if self.pooling == "attention" else None
        self.empty = nn.Parameter(torch.zeros(width))
        self.output = nn.Linear(width, field_dim)
        self.register_buffer(
            "causal", nn.Transformer.generate_square_subsequent_mask(self.length), persistent=False
        )

    def padded(self, bags: Mapping[str, JaggedTensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """({feature: (B, N) ids, 0 past a row's length}, (B,) lengths) of the sequence bags.

        Args:
            bags: the `SEQUENCE_FEATURES` bags of a batch (oldest first, at most N each).
        """
        lengths = bags[SEQUENCE_PIN].lengths().long()
        if bool((lengths > self.length).any()):
            raise ValueError(f"a sequence holds {int(lengths.max())} positions, the encoder {self.length}")
        ids = {
            name: bags[name].to_padded_dense(desired_length=self.length, padding_value=0).long()
            for name in SEQUENCE_FEATURES
        }
        return ids, lengths

    def states(
        self, bags: Mapping[str, JaggedTensor], pin_lookup: PinLookup | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """((B, N, width) per-position states, (B,) lengths) of the sequence bags.

        Args:
            bags: the sequence bags.
            pin_lookup: the pin tower's ID table lookup (`pin_table=shared`): (n,) ids -> (n, field_dim).
        """
        ids, lengths = self.padded(bags)
        return self.encode_ids(ids, lengths, pin_lookup), lengths

    def encode_ids(
        self, ids: Mapping[str, torch.Tensor], lengths: torch.Tensor, pin_lookup: PinLookup | None = None
    ) -> torch.Tensor:
        """(B, N, width) per-position states of right-padded id tensors; a real position's state
        depends on no pad (whatever its ids) and no later position.

        Args:
            ids: {feature: (B, N) ids}; past a row's length any valid id.
            lengths: (B,) each row's real positions.
            pin_lookup: the pin tower's ID table lookup (`pin_table=shared`).
        """
        pins = ids[SEQUENCE_PIN]
        flat = pins.reshape(-1)
        if self.pins is not None:
            keyed = KeyedJaggedTensor.from_lengths_sync(
                keys=[SEQUENCE_PIN], values=flat, lengths=torch.ones_like(flat, dtype=torch.int32)
            )
            pin_vectors = self.pins(keyed).to_dict()[SEQUENCE_PIN]
        elif pin_lookup is None:
            raise ValueError("model.user_encoder.pin_table=shared, but the tower was given no pin table")
        else:
            pin_vectors = pin_lookup(flat)
        x = self.pin_projection(pin_vectors).reshape(*pins.shape, -1)
        # the position counted from the oldest, not from the newest: a position's input must not
        # depend on how many positions follow it (the dense objective reads every position)
        offsets = torch.arange(pins.shape[1], device=pins.device)
        x = x + self.actions(ids[SEQUENCE_ACTION]) + self.gaps(ids[SEQUENCE_GAP]) + self.positions(offsets)
        causal = self.causal[: pins.shape[1], : pins.shape[1]].to(x.dtype)
        return self.norm(self.transformer(x, mask=causal, is_causal=True))

    def pool(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, field_dim): the pooled state of each sequence, projected.

        Args:
            states: the per-position states.
            lengths: each sequence's real positions.
        """
        if self.query is None:
            last = (lengths - 1).clamp(min=0)
            pooled = states[torch.arange(states.shape[0], device=states.device), last]
        else:
            real = torch.arange(states.shape[1], device=states.device) < lengths.unsqueeze(1)
            scores = (states @ self.query) / self.width**0.5
            weights = torch.softmax(scores.masked_fill(~real, float("-inf")), dim=1).nan_to_num(0.0)
            pooled = (weights.unsqueeze(2) * states).sum(1)
        return self.output(self._or_empty(pooled, lengths))

    def at(
        self, states: torch.Tensor, lengths: torch.Tensor, rows: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        """(P, field_dim): the state after each (row, position), projected (the dense objective).

        Args:
            states: the per-position states.
            lengths: each sequence's real positions.
            rows: each draw's sequence.
            positions: its position (< the sequence's length, or 0 for an empty sequence).
        """
        return self.output(self._or_empty(states[rows, positions], lengths[rows]))

    def _or_empty(self, pooled: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return torch.where((lengths > 0).unsqueeze(1), pooled, self.empty.to(pooled.dtype).expand_as(pooled))


class SequenceTower(Tower):
    """A user Tower whose last field is the encoded sequence (ebr.models.sequence).

    Args:
        spec: the tower's input features besides the sequence (`SEQUENCE_FEATURES` are not in it).
        crossing: builds the crossing module given num_fields and field_dim.
        embedding_dim: width of every field.
        output_dim: width of the final embedding.
        dense_hidden: hidden widths of the dense-feature MLP.
        id_freeze: freeze the separate ID table.
        id_dropout: ID dropout probability (training only).
        sequence: the SequenceEncoder's settings (`pin_rows`, `length`, `layers`, `heads`,
            `width`, `dropout`, `pooling`, `pin_table`).
    """

    EXTRA_FIELDS: ClassVar[int] = 1

    def __init__(
        self,
        spec: TowerSpec,
        crossing: CrossingFactory,
        embedding_dim: int,
        output_dim: int,
        dense_hidden: Any,
        id_freeze: bool,
        id_dropout: float,
        sequence: Mapping[str, Any],
    ) -> None:
        super().__init__(spec, crossing, embedding_dim, output_dim, dense_hidden, id_freeze, id_dropout)
        if not spec.sparse:
            self.ebc = None  # a sharded collection needs tables
        settings = dict(sequence)
        options = {key: settings.pop(key) for key in ("pooling", "pin_table") if key in settings}
        self.sequence = SequenceEncoder(embedding_dim, options=options, **settings)
        # the pin tower's ID lookup (`pin_table=shared`), set by the TwoTowerModel: a function, not
        # a submodule, so the table is the pin tower's alone (its sharded version once sharded)
        self.pin_lookup: PinLookup | None = None

    def _split(self, sparse: KeyedJaggedTensor) -> tuple[KeyedJaggedTensor | None, dict[str, JaggedTensor]]:
        keys = list(sparse.keys())
        missing = [name for name in SEQUENCE_FEATURES if name not in keys]
        if missing:
            raise ValueError(f"the sequence tower's input lacks {missing} (features.user_sparse: {keys})")
        bags = {name: sparse[name] for name in SEQUENCE_FEATURES}
        rest = [i for i, name in enumerate(keys) if name not in SEQUENCE_FEATURES]
        return (sparse.permute(rest) if rest else None), bags

    def _base(self, rest: KeyedJaggedTensor | None, dense: torch.Tensor) -> torch.Tensor | None:
        """The fields of the features besides the sequence, or None when there are none."""
        if self.num_fields == 1:
            return None
        return super().fields(rest, dense)

    def fields(self, sparse: KeyedJaggedTensor, dense: torch.Tensor) -> torch.Tensor:
        """The (batch, num_fields, embedding_dim) fields: the features', then the sequence's."""
        rest, bags = self._split(sparse)
        field = self.sequence.pool(*self.sequence.states(bags, self.pin_lookup)).unsqueeze(1)
        base = self._base(rest, dense)
        return field if base is None else torch.cat([base, field], dim=1)

    def position_embeddings(
        self, sparse: KeyedJaggedTensor, dense: torch.Tensor, rows: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        """(P, output_dim): the user embedding after each (row, position) of the batch's sequences.

        Args:
            sparse: the user tower's categorical input.
            dense: its dense input.
            rows: each draw's batch row.
            positions: its sequence position.
        """
        rest, bags = self._split(sparse)
        states, lengths = self.sequence.states(bags, self.pin_lookup)
        field = self.sequence.at(states, lengths, rows, positions).unsqueeze(1)
        base = self._base(rest, dense)
        return self.encode(field if base is None else torch.cat([base[rows], field], dim=1))
