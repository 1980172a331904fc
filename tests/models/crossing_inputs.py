"""Shared sizes, tiny DHEN members and helpers for the feature-crossing tests."""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import nn

from ebr.models.crossing.dcnv2 import DCNv2Crossing
from ebr.models.crossing.dhen import LinearCrossing
from ebr.models.crossing.masknet import ParallelMaskNet
from ebr.models.crossing.mlp import MLPCrossing
from ebr.models.crossing.transformer import FieldTransformer

CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "model" / "crossing"
NF, FD, B = 3, 4, 5  # tiny: 3 fields of width 4, batch 5
D = NF * FD

# DHEN members: factories that DHEN calls with (num_fields, field_dim), as Hydra `_partial_` targets build
TINY_TRANSFORMER = functools.partial(FieldTransformer, layers=1, width=8, heads=2)
TINY_MASKNET = functools.partial(ParallelMaskNet, num_blocks=2, block_dim=6, hidden=[10])
TINY_DCN = functools.partial(DCNv2Crossing, num_cross_layers=2, low_rank=3, hidden=[7])
TINY_MLP = functools.partial(MLPCrossing, hidden=[9])
LINEAR = LinearCrossing  # a bare class is a member too; DHEN gives it out_dim = the layer width


def _perturb_norms(module: nn.Module) -> None:
    """Non-trivial LayerNorm affine parameters, so a test would notice them being skipped."""
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, nn.LayerNorm):
                sub.weight.uniform_(0.5, 1.5)
                sub.bias.uniform_(-0.5, 0.5)
