"""Tests of the feature-crossing modules: shapes, gradients, hand-computed forwards, config errors
(DHEN's own layer and YAML checks are in test_dhen.py)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import hydra
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from ebr.models.crossing.dcnv2 import DCNv2Crossing
from ebr.models.crossing.dhen import DHEN
from ebr.models.crossing.masknet import MaskBlock, ParallelMaskNet, SerialMaskNet
from ebr.models.crossing.mlp import MLPCrossing
from ebr.models.crossing.transformer import FieldTransformer
from tests.models.crossing_inputs import (
    CONF_DIR,
    FD,
    LINEAR,
    NF,
    TINY_DCN,
    TINY_MASKNET,
    TINY_MLP,
    TINY_TRANSFORMER,
    B,
    D,
    _perturb_norms,
)

# (name, factory, expected output_dim worked out by hand from the arguments)
CASES: list[tuple[str, Callable[[], nn.Module], int]] = [
    ("masknet", lambda: ParallelMaskNet(NF, FD, num_blocks=2, block_dim=6, hidden=[10, 8]), 8),
    ("masknet_no_mlp", lambda: ParallelMaskNet(NF, FD, num_blocks=3, block_dim=6, hidden=[]), 18),
    ("masknet_serial", lambda: SerialMaskNet(NF, FD, num_blocks=3, block_dim=6), 6),
    ("masknet_serial_mlp", lambda: SerialMaskNet(NF, FD, num_blocks=2, block_dim=6, hidden=[5]), 5),
    ("dcnv2_stacked", lambda: DCNv2Crossing(NF, FD, 2, low_rank=3, hidden=[7]), 7),
    ("dcnv2_parallel", lambda: DCNv2Crossing(NF, FD, 2, low_rank=3, structure="parallel", hidden=[7]), D + 7),
    ("dcnv2_mixture", lambda: DCNv2Crossing(NF, FD, 2, low_rank=3, num_experts=3, hidden=[7]), 7),
    ("dcnv2_full_rank", lambda: DCNv2Crossing(NF, FD, 1, low_rank=None, hidden=[]), D),
    ("transformer", lambda: FieldTransformer(NF, FD, layers=2, width=8, heads=2), NF * 8),
    ("dhen_default_order", lambda: DHEN(NF, FD, [[TINY_TRANSFORMER, TINY_MLP], [TINY_MASKNET, TINY_MLP]]), D),
    ("dhen_reverse_order", lambda: DHEN(NF, FD, [[TINY_MASKNET, TINY_MLP], [TINY_TRANSFORMER, TINY_MLP]]), D),
    ("dhen_token_dim", lambda: DHEN(NF, FD, [[TINY_TRANSFORMER], [TINY_TRANSFORMER]], token_dim=8), NF * 8),
    ("dhen_concat", lambda: DHEN(NF, FD, [[TINY_DCN, LINEAR], [TINY_MLP]], combine="concat"), D),
    (
        "dhen_all_types",
        lambda: DHEN(NF, FD, [[TINY_TRANSFORMER, TINY_MASKNET, TINY_DCN, TINY_MLP, LINEAR]]),
        D,
    ),
]
CASE_IDS = [name for name, _, _ in CASES]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize(("name", "factory", "expected_dim"), CASES, ids=CASE_IDS)
def test_output_shape(name: str, factory: Callable[[], nn.Module], expected_dim: int) -> None:
    module = factory()
    out = module(torch.randn(B, D))
    assert module.output_dim == expected_dim, name
    assert out.shape == (B, expected_dim)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("name", "factory", "expected_dim"), CASES, ids=CASE_IDS)
def test_gradients_reach_every_parameter(
    name: str, factory: Callable[[], nn.Module], expected_dim: int
) -> None:
    module = factory()
    out = module(torch.randn(16, D))
    # a random projection, not a plain sum: the sum of a LayerNorm output has zero gradient
    (out * torch.randn_like(out)).sum().backward()
    missing = [n for n, p in module.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"{name}: no gradient for {missing}"


def _hand_mask_block(block: MaskBlock, v_emb: torch.Tensor, v_hid: torch.Tensor) -> torch.Tensor:
    lin1, lin2 = block.mask_net[0], block.mask_net[2]
    mask = F.linear(torch.relu(F.linear(v_emb, lin1.weight, lin1.bias)), lin2.weight, lin2.bias)
    h = (mask * v_hid) @ block.hidden.weight.T
    mu = h.mean(-1, keepdim=True)
    var = h.var(-1, unbiased=False, keepdim=True)
    normed = (h - mu) / torch.sqrt(var + block.norm.eps) * block.norm.weight + block.norm.bias
    return torch.relu(normed)


def test_mask_depends_on_instance() -> None:
    block = MaskBlock(D, D, 6, projection_ratio=0.5)
    x1, x2 = torch.randn(1, D), torch.randn(1, D)
    m1, m2 = block.mask(x1), block.mask(x2)
    assert m1.shape == (1, D)
    assert not torch.allclose(m1, m2)
    lin1, lin2 = block.mask_net[0], block.mask_net[2]
    assert lin1.out_features == round(0.5 * D)  # projection ratio sizes the mask's inner layer
    for x, m in ((x1, m1), (x2, m2)):
        expected = torch.relu(x @ lin1.weight.T + lin1.bias) @ lin2.weight.T + lin2.bias
        torch.testing.assert_close(m, expected)


def test_mask_block_matches_formula() -> None:
    block = MaskBlock(D, 5, 6, projection_ratio=2.0)
    _perturb_norms(block)
    v_emb, v_hid = torch.randn(B, D), torch.randn(B, 5)
    assert block.hidden.bias is None
    torch.testing.assert_close(block(v_emb, v_hid), _hand_mask_block(block, v_emb, v_hid))


def test_parallel_masknet_matches_hand_composition() -> None:
    net = ParallelMaskNet(NF, FD, num_blocks=3, block_dim=6, hidden=[10, 8])
    _perturb_norms(net)
    x = torch.randn(B, D)
    h = torch.cat([_hand_mask_block(block, x, x) for block in net.blocks], dim=-1)
    for layer in net.mlp:
        if isinstance(layer, nn.Linear):
            h = torch.relu(h @ layer.weight.T + layer.bias)
    torch.testing.assert_close(net(x), h)


def test_serial_masknet_mask_reads_embedding_and_hidden_chains() -> None:
    net = SerialMaskNet(NF, FD, num_blocks=3, block_dim=6, projection_ratio=2.0)
    _perturb_norms(net)
    x = torch.randn(B, D)
    h1 = _hand_mask_block(net.blocks[0], x, x)
    h2 = _hand_mask_block(net.blocks[1], x, h1)
    h3 = _hand_mask_block(net.blocks[2], x, h2)
    torch.testing.assert_close(net(x), h3)
    assert net.blocks[1].mask_net[0].in_features == D  # every mask reads the embedding layer
    assert net.blocks[1].mask_net[0].out_features == 2 * D


def _hand_low_rank_cross(net: DCNv2Crossing, x: torch.Tensor) -> torch.Tensor:
    cross = net.cross
    x_l = x
    for W, V, b in zip(cross.W_kernels, cross.V_kernels, cross.bias):
        x_l = x * ((x_l @ V.T) @ W.T + b) + x_l
    return x_l


def _hand_mlp(seq: nn.Sequential, h: torch.Tensor) -> torch.Tensor:
    for layer in seq:
        if isinstance(layer, nn.Linear):
            h = torch.relu(h @ layer.weight.T + layer.bias)
    return h


@pytest.mark.parametrize("structure", ["stacked", "parallel"])
def test_dcnv2_matches_hand_computation(structure: str) -> None:
    net = DCNv2Crossing(NF, FD, num_cross_layers=2, low_rank=3, structure=structure, hidden=[7, 5])
    with torch.no_grad():  # non-zero biases so a dropped bias term would show
        for b in net.cross.bias:
            b.uniform_(-0.5, 0.5)
    assert len(net.cross.W_kernels) == 2
    assert net.cross.W_kernels[0].shape == (D, 3)
    x = torch.randn(B, D)
    cross = _hand_low_rank_cross(net, x)
    if structure == "stacked":
        expected = _hand_mlp(net.mlp, cross)
    else:
        expected = torch.cat([cross, _hand_mlp(net.mlp, x)], dim=-1)
    torch.testing.assert_close(net(x), expected)


def test_transformer_tokens_are_the_fields() -> None:
    net = FieldTransformer(NF, FD, layers=1, width=8, heads=2)
    x = torch.randn(B, D)
    tokens = torch.stack(
        [x[:, i * FD : (i + 1) * FD] @ net.proj_weight[i] + net.proj_bias[i] for i in range(NF)], dim=1
    )
    torch.testing.assert_close(net.tokens(x), tokens)
    torch.testing.assert_close(net(x), net.encoder(tokens).reshape(B, -1))


BAD_CONFIGS: list[tuple[str, Callable[[], nn.Module], str]] = [
    ("masknet_zero_blocks", lambda: ParallelMaskNet(NF, FD, num_blocks=0), "num_blocks"),
    ("masknet_ratio_zero", lambda: ParallelMaskNet(NF, FD, projection_ratio=0.0), "projection_ratio"),
    ("masknet_ratio_negative", lambda: SerialMaskNet(NF, FD, projection_ratio=-1.0), "projection_ratio"),
    ("masknet_ratio_too_small", lambda: ParallelMaskNet(NF, FD, projection_ratio=0.01), "projection_ratio"),
    ("serial_zero_blocks", lambda: SerialMaskNet(NF, FD, num_blocks=0), "num_blocks"),
    ("masknet_block_dim", lambda: ParallelMaskNet(NF, FD, block_dim=0), "block_dim"),
    ("masknet_hidden", lambda: ParallelMaskNet(NF, FD, hidden=[8, 0]), "hidden"),
    ("masknet_dropout", lambda: SerialMaskNet(NF, FD, dropout=1.0), "dropout"),
    ("transformer_heads", lambda: FieldTransformer(NF, FD, width=10, heads=4), "width"),
    ("transformer_layers", lambda: FieldTransformer(NF, FD, layers=0, width=8, heads=2), "layers"),
    ("dcnv2_layers", lambda: DCNv2Crossing(NF, FD, num_cross_layers=0), "num_cross_layers"),
    ("dcnv2_rank", lambda: DCNv2Crossing(NF, FD, low_rank=0), "low_rank"),
    ("dcnv2_experts", lambda: DCNv2Crossing(NF, FD, num_experts=0), "num_experts"),
    ("dcnv2_full_rank_mixture", lambda: DCNv2Crossing(NF, FD, low_rank=None, num_experts=2), "num_experts"),
    ("dcnv2_structure", lambda: DCNv2Crossing(NF, FD, structure="diagonal"), "structure"),
    (
        "dhen_old_dict_member",
        lambda: DHEN(NF, FD, [[TINY_MLP], [{"type": "mlp"}]]),
        r"layers\[1\]\[0\].*_partial_",
    ),
    ("dhen_not_callable", lambda: DHEN(NF, FD, [[TINY_MLP, 3]]), r"layers\[0\]\[1\] must be a callable"),
    (
        "dhen_unknown_option",
        lambda: DHEN(NF, FD, [[functools.partial(MLPCrossing, widht=3)]]),
        r"layers\[0\]\[0\]: unknown option\(s\) \['widht'\] for MLPCrossing",
    ),
    (
        "dhen_shape_in_config",
        lambda: DHEN(NF, FD, [[functools.partial(MLPCrossing, field_dim=3)]]),
        r"layers\[0\]\[0\] \(MLPCrossing\): field_dim is set by DHEN",
    ),
    ("dhen_no_shape_argument", lambda: DHEN(NF, FD, [[nn.Linear]]), r"does not take the num_fields"),
    ("dhen_not_a_module", lambda: DHEN(NF, FD, [[lambda num_fields, field_dim: 3]]), "not an nn.Module"),
    ("dhen_no_output_dim", lambda: DHEN(NF, FD, [[lambda num_fields, field_dim: nn.ReLU()]]), "output_dim"),
    ("dhen_empty_layer", lambda: DHEN(NF, FD, [[TINY_MLP], []]), r"layers\[1\]"),
    ("dhen_no_layers", lambda: DHEN(NF, FD, []), "layers"),
    (
        "dhen_bad_transformer",
        lambda: DHEN(NF, FD, [[functools.partial(TINY_TRANSFORMER, width=9)]]),
        "width",
    ),
    (
        "dhen_zero_blocks",
        lambda: DHEN(NF, FD, [[functools.partial(ParallelMaskNet, num_blocks=0)]]),
        "num_blocks",
    ),
    ("dhen_combine", lambda: DHEN(NF, FD, [[TINY_MLP]], combine="max"), "combine"),
    ("dhen_shortcut", lambda: DHEN(NF, FD, [[TINY_MLP]], shortcut="skip"), "shortcut"),
    (
        "dhen_identity_mismatch",
        lambda: DHEN(NF, FD, [[TINY_MLP]], token_dim=6, shortcut="identity"),
        "identity",
    ),
    ("dhen_token_dim", lambda: DHEN(NF, FD, [[TINY_MLP]], token_dim=0), "token_dim"),
]


@pytest.mark.parametrize(("name", "factory", "field"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_fails_at_construction(name: str, factory: Callable[[], nn.Module], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        factory()


def test_wrong_input_width_is_reported() -> None:
    for module in (
        ParallelMaskNet(NF, FD, num_blocks=1, block_dim=4, hidden=[]),
        SerialMaskNet(NF, FD, num_blocks=1, block_dim=4),
        DCNv2Crossing(NF, FD, 1, low_rank=2, hidden=[3]),
        FieldTransformer(NF, FD, layers=1, width=4, heads=1),
        DHEN(NF, FD, [[LINEAR]]),
    ):
        with pytest.raises(ValueError, match="num_fields \\* field_dim"):
            module(torch.randn(B, D + 1))


YAMLS = sorted(CONF_DIR.glob("*.yaml"))


def test_all_crossing_configs_are_tested() -> None:
    names = {path.stem for path in YAMLS}
    assert {"mlp", "masknet", "masknet_serial", "dcnv2", "dhen"} <= names


@pytest.mark.parametrize("path", YAMLS, ids=[p.stem for p in YAMLS])
def test_yaml_instantiates_and_runs(path: Path) -> None:
    module = hydra.utils.instantiate(OmegaConf.load(path))(num_fields=7, field_dim=32)
    out = module(torch.randn(4, 7 * 32))
    assert out.shape == (4, module.output_dim)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("num_fields", [5, 6])
def test_mlp_wide_matches_masknet_parameter_count(num_fields: int) -> None:
    def parameters(name: str) -> tuple[int, int]:
        factory = hydra.utils.instantiate(OmegaConf.load(CONF_DIR / f"{name}.yaml"))
        module = factory(num_fields=num_fields, field_dim=32)
        return sum(p.numel() for p in module.parameters()), module.output_dim

    (wide, wide_out), (masknet, masknet_out) = parameters("mlp_wide"), parameters("masknet")
    assert abs(wide - masknet) / masknet < 0.02
    assert wide_out == masknet_out
    assert parameters("mlp")[0] < masknet / 5  # the plain baseline is far smaller: the control matters
