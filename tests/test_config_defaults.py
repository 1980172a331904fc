"""Defaults are written once: a preset under conf/ lists only what differs from its schema.

Each config group whose presets build one owner's object composes that owner's structured schema
first (`schema/<name>`, registered by ebr.config.register_schemas from the owner's dataclass or
function): a preset restating one of its defaults would be a second copy that can drift.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from ebr.config import EbrPretrainSchema, EbrSchema, register_schemas

CONF = Path(__file__).resolve().parent.parent / "conf"
SCHEMA_PREFIX = "/schema/"


def _schema(name: str) -> dict[str, Any]:
    register_schemas()
    return _plain(OmegaConf.create(ConfigStore.instance().load(f"{name}.yaml").node))


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=False)


def _body(path: Path) -> dict[str, Any]:
    """A preset's own keys, interpolations unresolved."""
    raw = _plain(OmegaConf.load(path))
    return {key: value for key, value in raw.items() if key != "defaults"}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merge(merged[key], value) if both else value
    return merged


def _at(package: str, node: dict[str, Any]) -> dict[str, Any]:
    for key in reversed([p for p in package.split(".") if p]):
        node = {key: node}
    return node


def inherited(path: Path, schemas_only: bool = False) -> dict[str, Any]:
    """What a preset's defaults list gives before its own keys: its schemas and sibling presets.

    Args:
        path: the preset.
        schemas_only: only the schemas' defaults (through sibling presets too), not the siblings' keys.
    """
    base: dict[str, Any] = {}
    for entry in _plain(OmegaConf.load(path)).get("defaults", []):
        if not isinstance(entry, str) or entry == "_self_":
            continue
        name, _, package = entry.partition("@")
        if name.startswith(SCHEMA_PREFIX):
            here = "" if package in ("", "_here_") else package
            base = _merge(base, _at(here, _schema(name[1:])))
        elif "/" not in name and (path.parent / f"{name}.yaml").is_file():
            sibling = path.parent / f"{name}.yaml"
            own = {} if schemas_only else _body(sibling)
            base = _merge(base, _merge(inherited(sibling, schemas_only), own))
    return base


def _leaves(node: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    found = []
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        found += _leaves(value, path) if isinstance(value, dict) and value else [(path, value)]
    return found


def restated_defaults(body: dict[str, Any], base: dict[str, Any], schemas: dict[str, Any]) -> list[str]:
    """The keys of `body` that restate a schema's default: equal to it and to what `base` (the
    preset's defaults list) gives them already (a key that undoes a sibling preset's value is not)."""
    given, defaults = dict(_leaves(base)), dict(_leaves(schemas))
    restated = []
    for key, value in _leaves(body):
        if key not in defaults or key.endswith("_target_") or isinstance(defaults[key], dict | list):
            continue
        same = [
            (type(v) is bool) == (type(value) is bool) and v == value for v in (given[key], defaults[key])
        ]
        if all(same):
            restated.append(f"{key}: {value!r}")
    return restated


def _presets() -> list[Path]:
    return sorted(CONF.rglob("*.yaml"))


@pytest.mark.parametrize("path", _presets(), ids=lambda p: p.relative_to(CONF).as_posix())
def test_a_preset_lists_only_what_differs_from_its_schema(path: Path) -> None:
    base, schemas = inherited(path), inherited(path, schemas_only=True)
    if path.parent.relative_to(CONF).as_posix() in (".", "experiment", "hparams_search"):
        # the tops (train.yaml, pretrain.yaml), the experiments' and searches' global keys: the top schema,
        # the world's and the simulation's
        top = EbrPretrainSchema if path.stem == "pretrain" else EbrSchema
        groups = {
            "data": {"config": _schema("schema/world")},
            "eval": {"simulation": _schema("schema/simulation")},
        }
        tops = _merge(_plain(OmegaConf.structured(top)), groups)
        base, schemas = _merge(tops, base), _merge(tops, schemas)
    restated = restated_defaults(_body(path), base, schemas)
    assert not restated, f"conf/{path.relative_to(CONF)} restates defaults of its schema: {restated}"


def test_the_check_finds_a_restated_default(tmp_path: Path) -> None:
    preset = tmp_path / "corpus" / "restating.yaml"
    preset.parent.mkdir()
    preset.write_text("defaults:\n  - /schema/corpus@_here_\n  - _self_\n\ndedup: false\nsize: 0.1\n")
    assert restated_defaults(_body(preset), inherited(preset), inherited(preset, True)) == ["dedup: False"]
    world = tmp_path / "data" / "small.yaml"
    world.parent.mkdir()
    world.write_text("defaults:\n  - /schema/world@config\n  - _self_\n\nconfig:\n  n_days: 30\n  seed: 0\n")
    assert restated_defaults(_body(world), inherited(world), inherited(world, True)) == ["config.seed: 0"]
    # a key that undoes a sibling preset's value is not a restated default
    undoing = tmp_path / "corpus" / "undoing.yaml"
    undoing.write_text("defaults:\n  - restating\n  - _self_\n\nsize: null\n")
    assert restated_defaults(_body(undoing), inherited(undoing), inherited(undoing, True)) == []


# the groups whose presets build one owner's object: each preset starts from the owner's schema
SCHEMA_GROUPS = ("corpus", "split", "eval")


OWNED_PRESETS = [p for g in SCHEMA_GROUPS for p in sorted((CONF / g).glob("*.yaml"))]


@pytest.mark.parametrize("path", OWNED_PRESETS, ids=lambda p: p.relative_to(CONF).as_posix())
def test_a_preset_of_an_owned_group_starts_from_the_owners_schema(path: Path) -> None:
    # a preset that listed every key itself would escape the check above
    assert inherited(path, schemas_only=True), f"conf/{path.relative_to(CONF)} does not compose its schema"
