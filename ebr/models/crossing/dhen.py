"""DHEN crossing (Zhang et al., arXiv 2203.11014): a stack of layers, each an ensemble of modules.

Layer n computes Y_{n+1} = LayerNorm(Combine(module_1(Y_n), ..., module_M(Y_n)) + ShortCut(Y_n)).

Token view (how a flat vector is re-split for token modules such as the Transformer): every DHEN
layer maps num_fields tokens to num_fields tokens, flattened field-major exactly like the tower's
input (token i = columns i*w:(i+1)*w). Each module is built with the standard crossing interface
`(num_fields, field_dim=<input token width>)`, so a Transformer in any layer reads the previous
layer's tokens directly. A module's output is brought to the layer's token width `token_dim` by an
adapter: a per-token Linear for modules that emit tokens (attribute `output_token_dim`), a flat
Linear to num_fields * token_dim for the others (MLP, MaskNet, DCNv2), none when the width already
matches. "sum" adds the adapted outputs (output token width token_dim); "concat" concatenates them
per token (output token width M * token_dim). The LayerNorm is applied per token, so a layer's
output has the same form as the tower's input: num_fields LayerNormed fields.

Members: each layer is a list of callables, in config Hydra `_partial_: true` targets such as
`{_target_: ebr.models.crossing.masknet.ParallelMaskNet, _partial_: true, num_blocks: 4}`. DHEN
calls each as `member(num_fields=..., field_dim=...)` with the shapes it decides; a member whose
signature has a `out_dim` parameter the config leaves unset (LinearCrossing) also receives the
layer's output width num_fields * token_dim, so it needs no adapter. The call must return an
nn.Module with an integer `output_dim` (and `output_token_dim` if its output is a token view).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ebr.models.crossing.masknet import ParallelMaskNet
from ebr.models.crossing.mlp import MLPCrossing
from ebr.models.crossing.transformer import FieldTransformer

COMBINES = ("sum", "concat")
SHORTCUTS = ("auto", "identity", "linear")
# the member parameter that receives the layer's output width when the config leaves it unset
LAYER_WIDTH_PARAMETER = "out_dim"

Member = Callable[..., nn.Module]


class LinearCrossing(nn.Module):
    """A single affine map of the flat input (the DHEN "linear" module).

    Args:
        num_fields: number of feature fields in the input.
        field_dim: width of each field.
        out_dim: output width (inside DHEN: the layer's width when left unset).
    """

    def __init__(self, num_fields: int, field_dim: int, out_dim: int) -> None:
        super().__init__()
        if out_dim <= 0:
            raise ValueError(f"LinearCrossing.out_dim must be positive, got {out_dim}")
        self.linear = nn.Linear(num_fields * field_dim, out_dim)
        self.output_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def default_layers() -> list[list[Member]]:
    """The KDD'25 appendix stack: (Transformer ∥ MLP), then (parallel MaskNet ∥ MLP)."""
    return [
        [
            functools.partial(FieldTransformer, layers=2, width=256, heads=4),
            functools.partial(MLPCrossing, hidden=[1024]),
        ],
        [functools.partial(ParallelMaskNet), functools.partial(MLPCrossing, hidden=[1024])],
    ]


def _describe(member: Any) -> str:
    """A short name of a member for error messages (the class behind a partial)."""
    target = member
    while isinstance(target, functools.partial):
        target = target.func
    return getattr(target, "__qualname__", None) or repr(member)


def _bound_keywords(member: Any) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The callable behind (nested) partials and the keywords the partials bind."""
    keywords: dict[str, Any] = {}
    while isinstance(member, functools.partial):
        if member.args:
            raise ValueError(f"positional arguments {member.args!r} are not supported; use keywords")
        keywords = {**member.keywords, **keywords}
        member = member.func
    return member, keywords


def build_module(
    member: Member, num_fields: int, field_dim: int, target_dim: int, where: str = "module"
) -> nn.Module:
    """Builds one DHEN module by calling its member factory with the shapes DHEN decides.

    Args:
        member: a callable (e.g. a Hydra `_partial_: true` target) returning an nn.Module.
        num_fields: number of tokens of the module's input.
        field_dim: width of each input token.
        target_dim: the layer's output width, given as `out_dim` to members that take it unset.
        where: position of the member in the config, used in error messages.
    """
    if not callable(member):
        hint = " (the {type: ...} form is gone: use {_target_: <class>, _partial_: true, ...})"
        hint = hint if isinstance(member, Mapping) else ""
        raise ValueError(
            f"{where} must be a callable building a module from (num_fields, field_dim), such as a"
            f" Hydra `_partial_: true` target; got {member!r}{hint}"
        )
    try:
        factory, bound = _bound_keywords(member)
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where} ({_describe(member)}): {error}") from error
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for shape in ("num_fields", "field_dim"):
        if shape in bound:
            raise ValueError(
                f"{where} ({_describe(member)}): {shape} is set by DHEN, remove it from the config"
            )
        if shape not in params and not takes_any:
            raise ValueError(f"{where} ({_describe(member)}) does not take the {shape} argument")
    if not takes_any:
        unknown = sorted(set(bound) - set(params))
        if unknown:
            allowed = sorted(set(params) - {"num_fields", "field_dim", "self"})
            raise ValueError(
                f"{where}: unknown option(s) {unknown} for {_describe(member)}; allowed: {allowed}"
            )
    options: dict[str, Any] = {}
    if LAYER_WIDTH_PARAMETER in params and LAYER_WIDTH_PARAMETER not in bound:
        options[LAYER_WIDTH_PARAMETER] = target_dim
    module = member(num_fields=num_fields, field_dim=field_dim, **options)
    if not isinstance(module, nn.Module):
        raise ValueError(f"{where}: {_describe(member)} returned {type(module).__name__}, not an nn.Module")
    if not isinstance(getattr(module, "output_dim", None), int):
        raise ValueError(f"{where}: {_describe(member)} built a module without an integer output_dim")
    return module


class _TokenLinear(nn.Module):
    """One Linear applied to every token of a flat token view: (B, F * w_in) -> (B, F * w_out)."""

    def __init__(self, num_fields: int, in_width: int, out_width: int) -> None:
        super().__init__()
        self.num_fields = num_fields
        self.linear = nn.Linear(in_width, out_width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.reshape(x.shape[0], self.num_fields, -1)).flatten(1)


def _adapter(module: nn.Module, num_fields: int, token_dim: int) -> nn.Module:
    """Maps a module's output to num_fields tokens of width token_dim (see the module docstring)."""
    token_width = getattr(module, "output_token_dim", None)
    if token_width is not None:
        return nn.Identity() if token_width == token_dim else _TokenLinear(num_fields, token_width, token_dim)
    out = num_fields * token_dim
    return nn.Identity() if module.output_dim == out else nn.Linear(module.output_dim, out)


class DHENLayer(nn.Module):
    """One DHEN layer: LayerNorm(Combine(modules(x)) + ShortCut(x)), LayerNorm per token.

    Args:
        num_fields: number of tokens.
        field_dim: width of each input token.
        members: the ensemble, one module factory per member (non-empty; see the module docstring).
        token_dim: width each module's output is adapted to; None keeps `field_dim`.
        combine: "sum" or "concat" (per token) of the adapted module outputs.
        shortcut: "identity", "linear" (a flat Linear projection) or "auto" (identity when the
            input and output widths match, linear otherwise).
        name: the layer's position in the config, used in error messages.
    """

    def __init__(
        self,
        num_fields: int,
        field_dim: int,
        members: Sequence[Member],
        token_dim: int | None = None,
        combine: str = "sum",
        shortcut: str = "auto",
        name: str = "DHENLayer",
    ) -> None:
        super().__init__()
        if num_fields <= 0:
            raise ValueError(f"{name}: num_fields must be positive, got {num_fields}")
        if field_dim <= 0:
            raise ValueError(f"{name}: field_dim must be positive, got {field_dim}")
        if isinstance(members, Mapping | str) or not isinstance(members, Sequence):
            raise ValueError(f"{name} must be a list of module factories, got {members!r}")
        if len(members) == 0:
            raise ValueError(f"{name} is an empty layer: give at least one module")
        token_dim = field_dim if token_dim is None else token_dim
        if token_dim <= 0:
            raise ValueError(f"{name}: token_dim must be positive, got {token_dim}")
        if combine not in COMBINES:
            raise ValueError(f"{name}: combine must be one of {COMBINES}, got {combine!r}")
        if shortcut not in SHORTCUTS:
            raise ValueError(f"{name}: shortcut must be one of {SHORTCUTS}, got {shortcut!r}")

        self.num_fields = num_fields
        self.input_dim = num_fields * field_dim
        self.token_dim = token_dim
        self.combine = combine
        self.ensemble = nn.ModuleList(
            build_module(member, num_fields, field_dim, num_fields * token_dim, where=f"{name}[{j}]")
            for j, member in enumerate(members)
        )
        self.adapters = nn.ModuleList(_adapter(m, num_fields, token_dim) for m in self.ensemble)
        self.output_token_dim = token_dim * (len(self.ensemble) if combine == "concat" else 1)
        self.output_dim = num_fields * self.output_token_dim

        if shortcut == "identity" and field_dim != self.output_token_dim:
            raise ValueError(
                f"{name}: shortcut 'identity' needs input token width {field_dim} to equal the output "
                f"token width {self.output_token_dim}; use shortcut 'linear' or 'auto'"
            )
        use_identity = shortcut == "identity" or (shortcut == "auto" and field_dim == self.output_token_dim)
        self.shortcut = nn.Identity() if use_identity else nn.Linear(self.input_dim, self.output_dim)
        self.norm = nn.LayerNorm(self.output_token_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.input_dim:
            raise ValueError(
                f"DHENLayer expects input of shape (batch, num_fields * field_dim = {self.input_dim}), "
                f"got {tuple(x.shape)}"
            )
        batch = x.shape[0]
        # a handful of modules per layer: the loop is over modules, not examples
        outputs = [adapter(module(x)) for module, adapter in zip(self.ensemble, self.adapters)]
        if self.combine == "sum":
            combined = torch.stack(outputs).sum(dim=0)
        else:
            tokens = [out.reshape(batch, self.num_fields, self.token_dim) for out in outputs]
            combined = torch.cat(tokens, dim=-1).flatten(1)
        y = combined + self.shortcut(x)
        return self.norm(y.reshape(batch, self.num_fields, self.output_token_dim)).flatten(1)


class DHEN(nn.Module):
    """A stack of DHEN layers; the output is the last layer's flattened tokens.

    Args:
        num_fields: number of feature fields (tokens) in the input.
        field_dim: width of each field.
        layers: one list of module factories per layer (see the module docstring); None gives
            `default_layers()` ([transformer, mlp] then [masknet, mlp]).
        token_dim: token width of every layer's output; None keeps `field_dim`.
        combine: "sum" or "concat", for every layer.
        shortcut: "auto", "identity" or "linear", for every layer.
    """

    def __init__(
        self,
        num_fields: int,
        field_dim: int,
        layers: Sequence[Sequence[Member]] | None = None,
        token_dim: int | None = None,
        combine: str = "sum",
        shortcut: str = "auto",
    ) -> None:
        super().__init__()
        layers = default_layers() if layers is None else layers
        if isinstance(layers, Mapping | str) or not isinstance(layers, Sequence):
            raise ValueError(
                f"DHEN.layers must be a list of layers (lists of module factories), got {layers!r}"
            )
        if len(layers) == 0:
            raise ValueError("DHEN.layers is empty: give at least one layer")
        if token_dim is not None and token_dim <= 0:
            raise ValueError(f"DHEN.token_dim must be positive or null, got {token_dim}")
        self.input_dim = num_fields * field_dim
        built: list[DHENLayer] = []
        width = field_dim
        for i, members in enumerate(layers):
            layer = DHENLayer(
                num_fields,
                width,
                members,
                token_dim=field_dim if token_dim is None else token_dim,
                combine=combine,
                shortcut=shortcut,
                name=f"DHEN.layers[{i}]",
            )
            built.append(layer)
            width = layer.output_token_dim
        self.layers = nn.ModuleList(built)
        self.output_dim = built[-1].output_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x
