"""A friendlier early error for a mistyped config key on the command line.

Hydra rejects `train.batch_sise=5` but does not say what the valid keys are. Before Hydra
runs, this composes the config with the command line's group choices and checks every plain
`key=value` override, naming the valid keys beside the bad one (and the closest match).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, ListConfig, OmegaConf

_ABSENT = object()
# keys that moved: old key -> the overrides that replace it ({value}: the old override's value)
MOVED_KEYS = {
    "train.num_negatives": "model/negatives=uniform model.negatives.num_negatives={value}",
}


def config_groups(config_dir: Path) -> set[str]:
    """Every config group under `config_dir` ("data", "model/crossing", ...)."""
    return {p.relative_to(config_dir).as_posix() for p in config_dir.rglob("*") if p.is_dir()}


def unknown_key_message(config_dir: Path, config_name: str, argv: Sequence[str]) -> str | None:
    """An error message for the first override whose key the config does not have, else None.

    Args:
        config_dir: the primary config directory.
        config_name: the primary config's name.
        argv: the command-line arguments (flags are ignored).
    """
    candidates = [a for a in argv if "=" in a and not a.startswith("-")]
    if not candidates:
        return None
    try:
        parsed = OverridesParser.create().parse_overrides(candidates)
    except Exception:  # Hydra reports malformed overrides itself
        return None
    moved = moved_key_message(parsed)
    if moved is not None:
        return moved
    groups = config_groups(config_dir)
    group_choices, keys = [], []
    for override in parsed:
        name = override.key_or_group
        if name in groups or name.startswith("hydra/"):
            choice = next(iter(override.sweep_string_iterator())) if override.is_sweep_override() else None
            group_choices.append(f"{name}={choice}" if choice is not None else override.input_line)
        elif not (
            override.is_add() or override.is_delete() or override.is_force_add()
        ) and not name.startswith("hydra."):
            keys.append(name)
    if not keys:
        return None
    try:
        cfg = _compose(config_dir, config_name, group_choices)
    except Exception:  # an unknown option: Hydra's own message lists the choices
        return None
    for key in keys:
        if not _has_key(cfg, key):
            return _describe(cfg, key)
    return None


def moved_key_message(overrides: Sequence[Any]) -> str | None:
    """An error message for the first override of a key that moved (`MOVED_KEYS`), else None.

    Args:
        overrides: parsed overrides (Hydra's `Override` objects).
    """
    for override in overrides:
        name = override.key_or_group
        if name in MOVED_KEYS:
            # as written (a sweep's values too): `~train.num_negatives` has none
            value = override.input_line.partition("=")[2] or "N"
            return f"{name} moved: use {MOVED_KEYS[name].format(value=value)}"
    return None


def _has_key(cfg: DictConfig, key: str) -> bool:
    """Whether `key` exists, even when its value is still missing (`???`, e.g. data.path)."""
    parent_path, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_path, default=_ABSENT) if parent_path else cfg
    if isinstance(parent, DictConfig):
        # `in` on a DictConfig is False for a ??? value; its keys() still list it
        return leaf in parent.keys()  # noqa: SIM118
    return isinstance(parent, ListConfig)


def _compose(config_dir: Path, config_name: str, overrides: list[str]) -> DictConfig:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            return compose(config_name, overrides=overrides)
    finally:
        GlobalHydra.instance().clear()


def _describe(cfg: DictConfig, key: str) -> str:
    parent_path, _, leaf = key.rpartition(".")
    parent = cfg
    found_path = []
    for part in parent_path.split(".") if parent_path else []:
        child = parent.get(part) if isinstance(parent, DictConfig) else None
        if not isinstance(child, DictConfig):
            leaf = part
            break
        parent, found_path = child, [*found_path, part]
    valid = sorted(str(k) for k in parent) if isinstance(parent, DictConfig) else []
    where = ".".join(found_path) or "the top level"
    close = difflib.get_close_matches(leaf, valid, n=1)
    hint = f" Did you mean '{'.'.join([*found_path, close[0]])}'?" if close else ""
    return (
        f"unknown config key '{key}': '{leaf}' is not a key of {where}. "
        f"Valid keys there: {', '.join(valid)}.{hint} (To add a new key on purpose, write +{key}=...)"
    )
