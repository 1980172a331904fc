"""Tests of the DHEN crossing: hand-computed layer forwards, member factories, its YAML and overrides."""

from __future__ import annotations

import functools

import hydra
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn

from ebr.models.crossing.dhen import DHEN, DHENLayer, LinearCrossing, default_layers
from ebr.models.crossing.masknet import ParallelMaskNet
from ebr.models.crossing.transformer import FieldTransformer
from tests.models.crossing_inputs import CONF_DIR, FD, LINEAR, NF, TINY_TRANSFORMER, B, D, _perturb_norms


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _layer_norm_per_token(y: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    tokens = y.reshape(y.shape[0], NF, -1)
    mu = tokens.mean(-1, keepdim=True)
    var = tokens.var(-1, unbiased=False, keepdim=True)
    return ((tokens - mu) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias).reshape(y.shape[0], -1)


@pytest.mark.parametrize(("token_dim", "shortcut"), [(None, "auto"), (None, "linear"), (6, "auto")])
def test_dhen_linear_layer_matches_formula(token_dim: int | None, shortcut: str) -> None:
    layer = DHENLayer(NF, FD, [LINEAR], token_dim=token_dim, shortcut=shortcut)
    _perturb_norms(layer)
    x = torch.randn(B, D)
    lin = layer.ensemble[0].linear
    out_width = NF * (token_dim or FD)
    assert lin.out_features == out_width  # "linear" produces the layer width itself: no adapter
    if token_dim is None and shortcut == "auto":
        assert isinstance(layer.shortcut, nn.Identity)
        shortcut_x = x
    else:
        shortcut_x = x @ layer.shortcut.weight.T + layer.shortcut.bias
    expected = _layer_norm_per_token(x @ lin.weight.T + lin.bias + shortcut_x, layer.norm)
    torch.testing.assert_close(layer(x), expected)


def test_dhen_concat_layer_matches_formula() -> None:
    layer = DHENLayer(NF, FD, [LINEAR, LINEAR], combine="concat")
    _perturb_norms(layer)
    x = torch.randn(B, D)
    a, b = (m.linear for m in layer.ensemble)
    ya = (x @ a.weight.T + a.bias).reshape(B, NF, FD)
    yb = (x @ b.weight.T + b.bias).reshape(B, NF, FD)
    combined = torch.cat([ya, yb], dim=-1).reshape(B, -1)  # per-token concatenation
    shortcut = x @ layer.shortcut.weight.T + layer.shortcut.bias
    assert layer.output_token_dim == 2 * FD
    torch.testing.assert_close(layer(x), _layer_norm_per_token(combined + shortcut, layer.norm))


def test_dhen_second_layer_transformer_reads_first_layer_tokens() -> None:
    net = DHEN(NF, FD, [[LINEAR], [TINY_TRANSFORMER]], token_dim=5)
    first, second = net.layers
    x = torch.randn(B, D)
    h = first(x)
    transformer = second.ensemble[0]
    assert transformer.field_dim == 5  # tokens of the previous layer's width
    tokens = torch.stack(
        [
            h[:, i * 5 : (i + 1) * 5] @ transformer.proj_weight[i] + transformer.proj_bias[i]
            for i in range(NF)
        ],
        dim=1,
    )
    torch.testing.assert_close(transformer.tokens(h), tokens)
    torch.testing.assert_close(net(x), second(h))


def test_dhen_accepts_any_module_factory() -> None:
    class Doubler(nn.Module):
        def __init__(self, num_fields: int, field_dim: int, scale: float = 1.0) -> None:
            super().__init__()
            self.output_dim = num_fields * field_dim
            self.scale = nn.Parameter(torch.tensor(scale))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.scale * x

    layer = DHENLayer(NF, FD, [functools.partial(Doubler, scale=2.0)])
    _perturb_norms(layer)
    x = torch.randn(B, D)
    torch.testing.assert_close(layer(x), _layer_norm_per_token(3 * x, layer.norm))


def test_dhen_sets_the_layer_width_only_when_the_config_leaves_it() -> None:
    token_dim = 6
    layer = DHENLayer(NF, FD, [LINEAR, functools.partial(LinearCrossing, out_dim=5)], token_dim=token_dim)
    default, explicit = layer.ensemble
    assert default.output_dim == NF * token_dim
    assert isinstance(layer.adapters[0], nn.Identity)
    assert explicit.output_dim == 5
    assert isinstance(layer.adapters[1], nn.Linear)
    assert layer.adapters[1].out_features == NF * token_dim


def test_default_layers_are_the_dhen_yaml_stack() -> None:
    torch.manual_seed(0)
    from_python = DHEN(7, 32)
    torch.manual_seed(0)
    from_yaml = hydra.utils.instantiate(OmegaConf.load(CONF_DIR / "dhen.yaml"))(num_fields=7, field_dim=32)
    assert [type(m) for layer in from_python.layers for m in layer.ensemble] == [
        type(m) for layer in from_yaml.layers for m in layer.ensemble
    ]
    assert len(default_layers()) == 2
    # dhen.yaml spells out the MaskNet options default_layers() leaves to ParallelMaskNet's defaults:
    # the same stack, so the same parameters for the same seed
    python_state, yaml_state = from_python.state_dict(), from_yaml.state_dict()
    assert list(python_state) == list(yaml_state)
    for key, value in python_state.items():
        torch.testing.assert_close(value, yaml_state[key], rtol=0, atol=0)


def test_dhen_yaml_matches_issue_defaults() -> None:
    module = hydra.utils.instantiate(OmegaConf.load(CONF_DIR / "dhen.yaml"))(num_fields=7, field_dim=32)
    first, second = module.layers
    transformer, mlp = first.ensemble
    assert isinstance(transformer, FieldTransformer)
    assert len(transformer.encoder.layers) == 2
    assert transformer.output_token_dim == 256
    assert transformer.encoder.layers[0].self_attn.num_heads == 4
    assert mlp.output_dim == 1024
    masknet, mlp2 = second.ensemble
    assert isinstance(masknet, ParallelMaskNet)
    assert len(masknet.blocks) == 4
    assert mlp2.output_dim == 1024


def test_command_line_members_build_the_documented_linear_reference() -> None:
    """experiments/crossing.md's linear reference: one layer of one LinearCrossing, from an override."""
    import ebr.train  # noqa: F401  (registers the config schema)

    member = "{_target_:ebr.models.crossing.dhen.LinearCrossing,_partial_:true}"
    with initialize_config_dir(config_dir=str(CONF_DIR.parents[1]), version_base="1.3"):
        cfg = compose("train", overrides=["model/crossing=dhen", f"model.crossing.layers=[[{member}]]"])
    torch.manual_seed(0)
    module = hydra.utils.instantiate(cfg.model.crossing)(num_fields=NF, field_dim=FD)
    (layer,) = module.layers
    (linear,) = layer.ensemble
    assert isinstance(linear, LinearCrossing)
    assert linear.output_dim == D
    assert isinstance(layer.shortcut, nn.Identity)
    x = torch.randn(B, D)
    expected = _layer_norm_per_token(x @ linear.linear.weight.T + linear.linear.bias + x, layer.norm)
    torch.testing.assert_close(module(x), expected)
