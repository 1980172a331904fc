"""A job's identity: the config that decides its results, flat, hashed and compared."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from ebr.runs.files import RESULT_NEUTRAL_KEYS


def flatten_config(container: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted keys (lists stay values).

    Args:
        container: a resolved config as plain Python (``OmegaConf.to_container(..., resolve=True)``).
        prefix: prepended to every key.
    """
    flat: dict[str, Any] = {}
    for key, value in container.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_config(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def result_config(container: Mapping[str, Any]) -> dict[str, Any]:
    """The flat config less the keys that cannot change results (`RESULT_NEUTRAL_KEYS`)."""

    def neutral(key: str) -> bool:
        return any(key == k or key.startswith(f"{k}.") for k in RESULT_NEUTRAL_KEYS)

    return {key: value for key, value in flatten_config(container).items() if not neutral(key)}


def config_hash(flat: Mapping[str, Any]) -> str:
    """A stable hash of a flat config (sha256 of its canonical JSON, first 16 hex digits)."""
    text = json.dumps(dict(flat), sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def config_differences(recorded: Mapping[str, Any], requested: Mapping[str, Any]) -> list[str]:
    """Human-readable ``key: old -> new`` lines for every key whose value differs (or is new/gone)."""
    lines = []
    for key in sorted(set(recorded) | set(requested)):
        old, new = recorded.get(key, "<absent>"), requested.get(key, "<absent>")
        if old != new:
            lines.append(f"{key}: {old!r} -> {new!r}")
    return lines
