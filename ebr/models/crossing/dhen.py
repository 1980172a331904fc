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

Modules come from config as dicts (`{type: transformer, layers: 2, width: 256, heads: 4}`) and are
built through `MODULE_REGISTRY`, keyed by type; `register_module` adds new types.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ebr.models.crossing.dcnv2 import DCNv2Crossing
from ebr.models.crossing.masknet import ParallelMaskNet
from ebr.models.crossing.mlp import MLPCrossing
from ebr.models.crossing.transformer import FieldTransformer

COMBINES = ("sum", "concat")
SHORTCUTS = ("auto", "identity", "linear")


class LinearCrossing(nn.Module):
    """A single affine map of the flat input (the DHEN "linear" module).

    Args:
        num_fields: number of feature fields in the input.
        field_dim: width of each field.
        out_dim: output width.
    """

    def __init__(self, num_fields: int, field_dim: int, out_dim: int) -> None:
        super().__init__()
        if out_dim <= 0:
            raise ValueError(f"LinearCrossing.out_dim must be positive, got {out_dim}")
        self.linear = nn.Linear(num_fields * field_dim, out_dim)
        self.output_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


@dataclass(frozen=True)
class ModuleType:
    """How to build one DHEN module type.

    Args:
        factory: called as `factory(num_fields=..., field_dim=..., **options)`; must return a module
            with an `output_dim` attribute (and `output_token_dim` if its output is a token view).
        target_option: an option that receives the layer's output width (num_fields * token_dim)
            when the config leaves it out, so the module produces that width without an adapter.
    """

    factory: Callable[..., nn.Module]
    target_option: str | None = None


MODULE_REGISTRY: dict[str, ModuleType] = {
    "masknet": ModuleType(ParallelMaskNet),
    "transformer": ModuleType(FieldTransformer),
    "dcnv2": ModuleType(DCNv2Crossing),
    "mlp": ModuleType(MLPCrossing),
    "linear": ModuleType(LinearCrossing, target_option="out_dim"),
}


def register_module(name: str, module_type: ModuleType) -> None:
    """Adds a module type usable as `{type: <name>, ...}` in DHEN layers.

    Args:
        name: the config `type` value.
        module_type: its factory.
    """
    if name in MODULE_REGISTRY:
        raise ValueError(f"DHEN module type {name!r} is already registered")
    MODULE_REGISTRY[name] = module_type


def default_layers() -> list[list[dict[str, Any]]]:
    """The KDD'25 appendix stack: (Transformer ∥ MLP), then (parallel MaskNet ∥ MLP)."""
    return [
        [{"type": "transformer", "layers": 2, "width": 256, "heads": 4}, {"type": "mlp", "hidden": [1024]}],
        [{"type": "masknet"}, {"type": "mlp", "hidden": [1024]}],
    ]


def _plain(value: Any) -> Any:
    """Shallow copy of config containers (e.g. OmegaConf's) into plain lists and dicts."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    return value


def build_module(
    spec: Mapping[str, Any], num_fields: int, field_dim: int, target_dim: int, where: str = "module"
) -> nn.Module:
    """Builds one DHEN module from its config dict through `MODULE_REGISTRY`.

    Args:
        spec: `{type: <registered name>, <constructor options>...}`.
        num_fields: number of tokens of the module's input.
        field_dim: width of each input token.
        target_dim: the layer's output width, for types with a `target_option`.
        where: position of the spec in the config, used in error messages.
    """
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where} must be a mapping with a 'type' key, got {spec!r}")
    options = {str(key): _plain(value) for key, value in spec.items()}
    kind = options.pop("type", None)
    if kind is None:
        raise ValueError(f"{where}.type is missing; known types: {sorted(MODULE_REGISTRY)}")
    if kind not in MODULE_REGISTRY:
        raise ValueError(
            f"{where}.type: unknown module type {kind!r}; known types: {sorted(MODULE_REGISTRY)}"
        )
    module_type = MODULE_REGISTRY[kind]
    params = inspect.signature(module_type.factory).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        allowed = set(params) - {"num_fields", "field_dim"}
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise ValueError(
                f"{where}: unknown option(s) {unknown} for type {kind!r}; allowed: {sorted(allowed)}"
            )
    if module_type.target_option is not None:
        options.setdefault(module_type.target_option, target_dim)
    module = module_type.factory(num_fields=num_fields, field_dim=field_dim, **options)
    if not isinstance(getattr(module, "output_dim", None), int):
        raise ValueError(f"{where}: module type {kind!r} built a module without an integer output_dim")
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
        module_specs: the ensemble, one config dict per module (non-empty).
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
        module_specs: Sequence[Mapping[str, Any]],
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
        if isinstance(module_specs, Mapping | str) or not isinstance(module_specs, Sequence):
            raise ValueError(f"{name} must be a list of module dicts, got {module_specs!r}")
        if len(module_specs) == 0:
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
            build_module(spec, num_fields, field_dim, num_fields * token_dim, where=f"{name}[{j}]")
            for j, spec in enumerate(module_specs)
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
        layers: one list of module dicts per layer; None gives `default_layers()`
            ([transformer, mlp] then [masknet, mlp]).
        token_dim: token width of every layer's output; None keeps `field_dim`.
        combine: "sum" or "concat", for every layer.
        shortcut: "auto", "identity" or "linear", for every layer.
    """

    def __init__(
        self,
        num_fields: int,
        field_dim: int,
        layers: Sequence[Sequence[Mapping[str, Any]]] | None = None,
        token_dim: int | None = None,
        combine: str = "sum",
        shortcut: str = "auto",
    ) -> None:
        super().__init__()
        layers = default_layers() if layers is None else layers
        if isinstance(layers, Mapping | str) or not isinstance(layers, Sequence):
            raise ValueError(f"DHEN.layers must be a list of layers (lists of module dicts), got {layers!r}")
        if len(layers) == 0:
            raise ValueError("DHEN.layers is empty: give at least one layer")
        if token_dim is not None and token_dim <= 0:
            raise ValueError(f"DHEN.token_dim must be positive or null, got {token_dim}")
        self.input_dim = num_fields * field_dim
        built: list[DHENLayer] = []
        width = field_dim
        for i, specs in enumerate(layers):
            layer = DHENLayer(
                num_fields,
                width,
                specs,
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
