"""Saving and loading a trained two-tower model, independent of the trainer and of sharding.

The artifact holds the model's Hydra config (a partial missing only the tower specs), the
tower specs, the feature names each tower reads, a plain-tensor state dict, and `info`, its
manifest: the artifact format, the data set it was trained on (`data_name`, `data_source`) and
the ID mapping (table rows are the data's dense user / pin ids; `user_rows`, `pin_rows`), and,
for an evaluation-only run to refuse another world, `data_fingerprint` and the `image_signature`
feature's level.
Artifacts written before `info` existed load with an empty one.

Everything in it is a tensor or plain data (dicts, lists, strings, numbers), so it loads with
`torch.load(..., weights_only=True)`: nothing is unpickled. A file of another format version is
refused, naming both versions and what differs; a truncated or foreign file gets an
`ArtifactError` naming it.
"""

from __future__ import annotations

import functools
from dataclasses import asdict
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from ebr.models.tower import TowerSpec
from ebr.models.two_tower import PART_KEYS, TowerParts, TwoTowerModel
from ebr.runs.files import write_atomic

# 2: categorical bags are weighted averages (weights in the input); 1 pooled unweighted means.
# The optional `info` manifest is additive: version 2 files without it still load.
ARTIFACT_FORMAT = "ebr-two-tower/2"
FORMAT_NAME = "ebr-two-tower"


class ArtifactError(ValueError):
    """A model artifact that cannot be used: damaged, foreign, or of another format version."""


def load_weights(path: str | Path, what: str = "tensor file") -> Any:
    """`torch.load(path, weights_only=True)` on CPU, with an error naming the file when it fails.

    Args:
        path: the file.
        what: what the file is, for the message (e.g. "ebr model artifact").

    Raises:
        FileNotFoundError: when the file does not exist.
        ArtifactError: when it is truncated, not a torch file, or holds more than tensors and plain data.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # zip/pickle/EOF errors of a cut or foreign file; weights_only refusals
        reason = " ".join(str(error).split())[:300] or type(error).__name__
        raise ArtifactError(
            f"{path}: cannot be read as an {what} ({path.stat().st_size} bytes;"
            f" {type(error).__name__}: {reason}); the file is truncated, damaged or not written by ebr"
        ) from error


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
        info: the manifest: what the model was trained on (`data_name`, `data_source`, `user_rows`,
            `pin_rows`, ...): plain data, stored with the format version.
    """
    config = (
        OmegaConf.to_container(model_config, resolve=True)
        if isinstance(model_config, DictConfig)
        else model_config
    )
    payload = {
        "format": ARTIFACT_FORMAT,
        "info": {"format": ARTIFACT_FORMAT, **(info or {})},
        "model_config": config,
        "user_spec": asdict(user_spec),
        "pin_spec": asdict(pin_spec),
        "features": features,
        "state_dict": state_dict,
    }
    write_atomic(path, lambda tmp: torch.save(payload, tmp))


def load_artifact(path: str | Path) -> tuple[TwoTowerModel, dict[str, Any]]:
    """Rebuild the model in eval mode (plain, unsharded tables) and return it with the payload.

    Raises:
        FileNotFoundError: when the file does not exist.
        ArtifactError: naming the file, when it is damaged, foreign or of another format version.
    """
    payload = load_weights(path, "ebr model artifact")
    found = payload.get("format") if isinstance(payload, dict) else None
    if found != ARTIFACT_FORMAT:
        if isinstance(found, str) and found.startswith(f"{FORMAT_NAME}/"):
            raise ArtifactError(
                f"{path}: ebr model artifact format {found!r}, this ebr reads {ARTIFACT_FORMAT!r}"
                f" ({_format_differences(found)}); retrain it (force=true) with this version"
            )
        raise ArtifactError(
            f"{path}: not an ebr model artifact (format {found!r}, expected {ARTIFACT_FORMAT!r})"
        )
    try:
        model = build_model(
            payload["model_config"], TowerSpec(**payload["user_spec"]), TowerSpec(**payload["pin_spec"])
        )
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, RuntimeError) as error:
        reason = " ".join(str(error).split())[:300]
        raise ArtifactError(
            f"{path}: the ebr model artifact is inconsistent ({type(error).__name__}: {reason})"
        ) from error
    model.eval()
    payload.setdefault("info", {})
    return model, payload


_CHANGES = {
    "ebr-two-tower/1": "categorical bags pooled as unweighted means (2 on: weighted averages)",
}


def _format_differences(found: str) -> str:
    """What changed between an older or newer format and this one."""
    known = [text for version, text in _CHANGES.items() if found <= version]
    return "; ".join(known) if known else "written by a newer ebr"


def artifact_info(path: str | Path) -> dict[str, Any]:
    """The artifact's `info` (empty for an artifact written before it existed), without building the model.

    An evaluation-only job asks twice (the file's kind before the data load, its data after it):
    the file is read once while its size and modification time stay the same.

    Args:
        path: the artifact file.
    """
    try:
        stat = Path(path).stat()
    except OSError:  # no version to key on: the read itself says what is wrong
        return _artifact_info.__wrapped__(str(path), 0, 0)
    return dict(_artifact_info(str(path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=4)
def _artifact_info(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    """`artifact_info` of one version of a file (the version is part of the cache key)."""
    payload = load_weights(path, "ebr model artifact")
    if not isinstance(payload, dict) or payload.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"{path}: not an ebr model artifact of format {ARTIFACT_FORMAT!r}")
    return dict(payload.get("info") or {})


def build_model(model_config: DictConfig | dict, user_spec: TowerSpec, pin_spec: TowerSpec) -> TwoTowerModel:
    """Instantiate the model config (a `_partial_` TwoTowerModel) for the given tower specs.

    The parts' keys (`PART_KEYS`: `id_freeze`, `id_dropout`, `conditioning`) sit flat beside the
    widths, as every `model.pt` saves them, and reach the model as its `TowerParts`.

    Args:
        model_config: the network config (an artifact's `model_config`).
        user_spec: the user tower's input spec.
        pin_spec: the pin tower's input spec.
    """
    config = (
        OmegaConf.to_container(model_config, resolve=True)
        if isinstance(model_config, DictConfig)
        else dict(model_config)
    )
    parts = {key: config.pop(key) for key in PART_KEYS if key in config}
    factory = hydra.utils.instantiate(OmegaConf.create(config))
    return factory(user_spec=user_spec, pin_spec=pin_spec, parts=TowerParts(**parts) if parts else None)
