"""The world cache: round trips, invalidation, atomic writes and races."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from world_helpers import CONF, TINY, assert_worlds_equal, tiny

from ebr.data.loaders import synthetic as world_cache
from ebr.data.loaders.synthetic import load_world
from ebr.data.schema import SECONDS_PER_DAY
from ebr.data.world import WorldConfig
from ebr.data.world.config import register_world_schema


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith((".tmp", ".trash")))


def test_cache_round_trip_equals_fresh_generation(world, tmp_path, monkeypatch):
    first = load_world(TINY, tmp_path)
    assert_worlds_equal(first, world)
    directory = tmp_path / f"world-{TINY.hash()}"
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [*world_cache.DATA_FILES, world_cache.MANIFEST]
    )

    def fail(config):
        raise AssertionError("generated although a valid cache exists")

    monkeypatch.setattr(world_cache, "generate_world", fail)
    assert_worlds_equal(load_world(TINY, str(tmp_path)), world)
    assert_worlds_equal(load_world(TINY.to_dict(), tmp_path), world)
    assert _leftovers(tmp_path) == []


DAMAGE = {
    "garbage manifest": lambda d, m: (d / "manifest.json").write_text("{not json"),
    "wrong hash": lambda d, m: (d / "manifest.json").write_text(json.dumps({**m, "hash": "0" * 16})),
    "other config": lambda d, m: (d / "manifest.json").write_text(
        json.dumps({**m, "config": tiny(seed=5).to_dict(), "hash": tiny(seed=5).hash()})
    ),
    "missing file": lambda d, m: (d / "pins.parquet").unlink(),
    "bad parquet": lambda d, m: (d / "events.parquet").write_bytes(b"PAR1 truncated"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_invalid_cache_is_regenerated(world, tmp_path, damage):
    load_world(TINY, tmp_path)
    directory = tmp_path / f"world-{TINY.hash()}"
    DAMAGE[damage](directory, json.loads((directory / world_cache.MANIFEST).read_text()))
    assert_worlds_equal(load_world(TINY, tmp_path), world)
    assert world_cache.read_cached_world(directory, TINY) is not None
    assert _leftovers(tmp_path) == []


def test_failed_write_leaves_no_partial_directory(tmp_path, monkeypatch):
    def broken_write(directory, data, config, seconds):
        (directory / "events.parquet").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(world_cache, "write_world", broken_write)
    with pytest.raises(OSError, match="disk full"):
        load_world(TINY, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_race_loser_uses_the_winners_copy(world, tmp_path, monkeypatch):
    load_world(TINY, tmp_path)
    marker = tmp_path / f"world-{TINY.hash()}" / "winner"
    marker.write_text("")
    real_read = world_cache.read_cached_world
    calls = []

    def late_read(directory, config):  # the first check misses: the winner publishes in between
        calls.append(directory)
        return None if len(calls) == 1 else real_read(directory, config)

    monkeypatch.setattr(world_cache, "read_cached_world", late_read)
    assert_worlds_equal(load_world(TINY, tmp_path), world)
    assert marker.exists()
    assert len(calls) == 2
    assert _leftovers(tmp_path) == []


def test_parallel_loads_agree(world, tmp_path):
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(load_world(TINY, tmp_path))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3
    for result in results:
        assert_worlds_equal(result, world)
    assert sorted(os.listdir(tmp_path)) == [f"world-{TINY.hash()}"]


def test_hydra_presets_instantiate(tmp_path):
    hydra = pytest.importorskip("hydra")
    from hydra.utils import instantiate

    register_world_schema()
    with hydra.initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra.compose(
            overrides=["+data=synthetic_tiny", f"+paths.cache_dir={tmp_path}", "data.config.n_days=5"]
        )
        default = hydra.compose(overrides=["+data=synthetic", f"+paths.cache_dir={tmp_path}"])
    data = instantiate(cfg.data)
    assert data.users.n_rows == cfg.data.config.n_users
    assert data.events["timestamp"].max() < 5 * SECONDS_PER_DAY
    fields = {k: v for k, v in cfg.data.config.items() if k != "_target_"}
    assert (tmp_path / f"world-{WorldConfig.from_dict(fields).hash()}").is_dir()
    # the default preset equals the WorldConfig defaults, so code and YAML cannot drift apart
    assert instantiate(default.data.config) == WorldConfig()
