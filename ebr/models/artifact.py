"""Saving and loading a trained two-tower model, independent of the trainer and of sharding.

The artifact holds the model's Hydra config (a partial missing only the tower specs), the
tower specs, the feature names each tower reads, a plain-tensor state dict and `info`: what it was
trained on (`data_source`, `data_fingerprint`, the `image_signature` feature's level), so that an
evaluation-only run can refuse another world. Artifacts written before `info` existed load with
an empty one.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from ebr.models.tower import TowerSpec
from ebr.models.two_tower import TwoTowerModel

# 2: categorical bags are weighted averages (weights in the input); 1 pooled unweighted means
ARTIFACT_FORMAT = "ebr-two-tower/2"


def save_artifact(
    path: str | Path,
    model_config: DictConfig | dict,
    user_spec: TowerSpec,
    pin_spec: TowerSpec,
    features: dict[str, list[str]],
    state_dict: dict[str, torch.Tensor],
    info: dict[str, Any] | None = None,
) -> None:
    """Write the artifact atomically (temporary name, then rename).

    Args:
        path: target file (conventionally `model.pt` in the run directory).
        model_config: the `model` node that builds a TwoTowerModel given the specs.
        user_spec: the user tower's input spec.
        pin_spec: the pin tower's input spec.
        features: {"user_sparse", "user_dense", "pin_sparse", "pin_dense"} feature name lists.
        state_dict: plain tensors (see ebr.training.distributed.dense_state_dict).
        info: plain values describing what the model was trained on (None: none).
    """
    config = (
        OmegaConf.to_container(model_config, resolve=True)
        if isinstance(model_config, DictConfig)
        else model_config
    )
    payload = {
        "format": ARTIFACT_FORMAT,
        "model_config": config,
        "user_spec": asdict(user_spec),
        "pin_spec": asdict(pin_spec),
        "features": features,
        "state_dict": state_dict,
        "info": dict(info or {}),
    }
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_artifact(path: str | Path) -> tuple[TwoTowerModel, dict[str, Any]]:
    """Rebuild the model in eval mode (plain, unsharded tables) and return it with the payload."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=False)
    if payload.get("format") != ARTIFACT_FORMAT:
        raise ValueError(f"{path}: not an ebr model artifact (format {payload.get('format')!r})")
    model = build_model(
        payload["model_config"], TowerSpec(**payload["user_spec"]), TowerSpec(**payload["pin_spec"])
    )
    model.load_state_dict(payload["state_dict"])
    model.eval()
    payload.setdefault("info", {})
    return model, payload


def artifact_info(path: str | Path) -> dict[str, Any]:
    """The artifact's `info` (empty for an artifact written before it existed), without building the model.

    Args:
        path: the artifact file.
    """
    payload = torch.load(Path(path), map_location="cpu", weights_only=False)
    if not isinstance(payload, dict) or payload.get("format") != ARTIFACT_FORMAT:
        raise ValueError(f"{path}: not an ebr model artifact")
    return dict(payload.get("info") or {})


def build_model(model_config: DictConfig | dict, user_spec: TowerSpec, pin_spec: TowerSpec) -> TwoTowerModel:
    """Instantiate the model config (a `_partial_` TwoTowerModel) for the given tower specs."""
    config = OmegaConf.create(model_config) if isinstance(model_config, dict) else model_config
    factory = hydra.utils.instantiate(config)
    return factory(user_spec=user_spec, pin_spec=pin_spec)
