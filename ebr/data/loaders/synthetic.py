"""Load the synthetic world: from its on-disk cache when a valid copy exists, else generate (and cache) it.

The generator is `ebr.data.world`; this module is the loader around it. The cache keeps one
directory per world, `<cache_dir>/world-<hash>/`, with parquet tables, the truth and a manifest.
A world is written to a temporary directory and renamed into place, so a reader never sees a partial
world. Parallel jobs may race to publish the same world: the loser discards its copy and uses the
winner's. A directory whose manifest does not match its config (or that misses a file, or fails to
read) is regenerated, never used.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import ebr
from ebr.data.csr import offsets_from_lengths
from ebr.data.schema import (
    CLICK,
    IMPRESSION,
    REPIN,
    CategoricalFeature,
    FeatureTable,
    InteractionData,
    apply_duplicate_policy,
)
from ebr.data.world.config import GENERATOR_VERSION, WorldConfig
from ebr.data.world.generate import WORLD_NAME, generate_world
from ebr.data.world.truth import SyntheticTruth
from ebr.runs.files import publish_directory

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
DATA_FILES = ("events.parquet", "users.parquet", "pins.parquet", "truth.npz")
_SCHEMA_KEY = b"ebr.feature_table"


def load_world(
    config: WorldConfig | Mapping[str, Any],
    cache_dir: str | os.PathLike[str] | None = None,
    duplicates: str = "keep",
) -> InteractionData:
    """The world of `config`, read from the cache when a valid copy exists, else generated (and cached).

    This is the Hydra target of conf/data/synthetic*.yaml.

    Args:
        config: the world config (a mapping of its fields is accepted too, e.g. from Hydra).
        cache_dir: root of the cache; None disables caching.
        duplicates: `data.duplicates`, what to do with exact duplicate event rows
            (`apply_duplicate_policy`); `keep`: the simulator now and then logs a pin shown twice in
            one second, and the worlds' results were measured with those rows.

    Returns:
        Data equal to `generate_world(config)` (less its duplicates under `drop`).
    """
    return apply_duplicate_policy(_world(config, cache_dir), duplicates)


def _world(
    config: WorldConfig | Mapping[str, Any], cache_dir: str | os.PathLike[str] | None
) -> InteractionData:
    config = config if isinstance(config, WorldConfig) else WorldConfig.from_dict(dict(config.items()))
    if cache_dir is None:
        return generate_world(config)
    root = Path(cache_dir)
    final = root / f"world-{config.hash()}"
    cached = read_cached_world(final, config)
    if cached is not None:
        return cached
    start = time.perf_counter()
    data = generate_world(config)
    seconds = time.perf_counter() - start
    winner = publish_directory(
        final,
        lambda tmp: write_world(tmp, data, config, seconds),
        keep=lambda found: read_cached_world(found, config),
    )
    return data if winner is None else winner


def read_manifest(directory: Path, config: WorldConfig) -> dict[str, Any] | None:
    """The manifest of a cached world if it is complete and matches `config`, else None (with a warning).

    Args:
        directory: the world's cache directory.
        config: the config the directory must hold.
    """
    if not directory.is_dir():
        return None
    problem = None
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        stored = WorldConfig.from_dict(manifest["config"])
        missing = [name for name in DATA_FILES if not (directory / name).is_file()]
        if manifest.get("hash") != stored.hash() or stored != config:
            problem = f"manifest hash {manifest.get('hash')!r} does not match its config / the requested one"
        elif manifest.get("generator_version") != GENERATOR_VERSION:
            problem = f"generator version {manifest.get('generator_version')} != {GENERATOR_VERSION}"
        elif missing:
            problem = f"missing file(s) {missing}"
    except (OSError, ValueError, KeyError, TypeError) as error:
        problem = f"unreadable manifest ({type(error).__name__}: {error})"
    if problem is not None:
        logger.warning("world cache %s is invalid and will be regenerated: %s", directory, problem)
        return None
    return manifest


def read_cached_world(directory: Path, config: WorldConfig) -> InteractionData | None:
    """Read a cached world, or None when it is missing or invalid.

    Args:
        directory: the world's cache directory.
        config: the config the directory must hold.
    """
    manifest = read_manifest(directory, config)
    if manifest is None:
        return None
    try:
        events = pq.read_table(directory / "events.parquet").to_pandas()
        users = _read_table(directory / "users.parquet")
        pins = _read_table(directory / "pins.parquet")
        with np.load(directory / "truth.npz") as arrays:
            truth = SyntheticTruth.from_arrays({name: arrays[name] for name in arrays.files})
        if len(events) != manifest["counts"]["events"]:
            raise ValueError(
                f"events.parquet has {len(events)} rows, manifest says {manifest['counts']['events']}"
            )
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as error:
        logger.warning("world cache %s is unreadable and will be regenerated: %s", directory, error)
        return None
    return InteractionData(
        name=WORLD_NAME,
        events=events,
        users=users,
        pins=pins,
        n_interests=config.n_interests,
        source=f"synthetic:{config.hash()}",
        truth=truth,
    )


def write_world(
    directory: Path, data: InteractionData, config: WorldConfig, generation_seconds: float
) -> None:
    """Write all files of a world into an existing directory, the manifest last.

    Args:
        directory: target directory (normally a fresh temporary one).
        data: the generated world.
        config: its config.
        generation_seconds: how long generation took (recorded in the manifest).
    """
    if not isinstance(data.truth, SyntheticTruth):
        raise TypeError("write_world: data.truth must be a SyntheticTruth")
    pq.write_table(pa.Table.from_pandas(data.events, preserve_index=False), directory / "events.parquet")
    _write_table(data.users, directory / "users.parquet")
    _write_table(data.pins, directory / "pins.parquet")
    np.savez(directory / "truth.npz", **data.truth.to_arrays())
    counts = data.events["event"].value_counts()
    manifest = {
        "config": config.to_dict(),
        "hash": config.hash(),
        "generator_version": GENERATOR_VERSION,
        "ebr_version": ebr.__version__,
        "generation_seconds": round(generation_seconds, 3),
        "events_per_second": round(len(data.events) / max(generation_seconds, 1e-9)),
        "counts": {
            "users": data.users.n_rows,
            "pins": data.pins.n_rows,
            "signatures": data.pins.categorical["image_signature"].cardinality,
            "events": len(data.events),
            "impressions": int(counts.get(IMPRESSION, 0)),
            "clicks": int(counts.get(CLICK, 0)),
            "repins": int(counts.get(REPIN, 0)),
        },
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _list_array(offsets: np.ndarray, values: np.ndarray) -> pa.Array:
    return pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), pa.array(values))


def _write_table(table: FeatureTable, path: Path) -> None:
    """A FeatureTable as parquet: CSR features as list columns, the layout in the schema metadata."""
    columns: dict[str, pa.Array] = {}
    layout: dict[str, Any] = {"n_rows": table.n_rows, "categorical": {}, "dense": {}, "meta": []}
    for name, feature in table.categorical.items():
        columns[f"cat.{name}"] = _list_array(feature.offsets, feature.values)
        if feature.weights is not None:
            columns[f"catw.{name}"] = _list_array(feature.offsets, feature.weights)
        layout["categorical"][name] = {
            "cardinality": feature.cardinality,
            "weighted": feature.weights is not None,
        }
    for name, array in table.dense.items():
        widths = np.full(table.n_rows, _width(array), dtype=np.int64)
        columns[f"dense.{name}"] = _list_array(offsets_from_lengths(widths), array.reshape(-1))
        layout["dense"][name] = list(array.shape[1:])
    for name, array in table.meta.items():
        columns[f"meta.{name}"] = pa.array(array)
        layout["meta"].append(name)
    arrow = pa.table(columns).replace_schema_metadata({_SCHEMA_KEY: json.dumps(layout).encode()})
    pq.write_table(arrow, path)


def _width(array: np.ndarray) -> int:
    return int(np.prod(array.shape[1:], dtype=np.int64))


def _read_list(table: pa.Table, column: str) -> tuple[np.ndarray, np.ndarray]:
    array = table.column(column).combine_chunks()
    offsets = array.offsets.to_numpy()
    return offsets - offsets[0], array.flatten().to_numpy(zero_copy_only=False)


def _read_table(path: Path) -> FeatureTable:
    """Inverse of `_write_table`."""
    arrow = pq.read_table(path)
    metadata = arrow.schema.metadata or {}
    if _SCHEMA_KEY not in metadata:
        raise ValueError(f"{path}: missing the ebr feature-table layout in the parquet metadata")
    layout = json.loads(metadata[_SCHEMA_KEY])
    n_rows = int(layout["n_rows"])
    categorical = {}
    for name, info in layout["categorical"].items():
        offsets, values = _read_list(arrow, f"cat.{name}")
        weights = _read_list(arrow, f"catw.{name}")[1] if info["weighted"] else None
        categorical[name] = CategoricalFeature(offsets, values, int(info["cardinality"]), weights)
    dense = {}
    for name, shape in layout["dense"].items():
        dense[name] = _read_list(arrow, f"dense.{name}")[1].reshape(n_rows, *shape)
    meta = {name: arrow.column(f"meta.{name}").to_numpy() for name in layout["meta"]}
    return FeatureTable(n_rows=n_rows, categorical=categorical, dense=dense, meta=meta)
