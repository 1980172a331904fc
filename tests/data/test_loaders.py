"""Every loader lives in ebr.data.loaders and names the data it read in `InteractionData.source`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_movielens import write_latest
from world_helpers import TINY

import ebr.data.loaders
import ebr.data.world
from ebr.data.history import with_history
from ebr.data.loaders import load_events_file, load_movielens, load_world
from ebr.data.splits import global_temporal_split

REPO = Path(__file__).resolve().parents[2]


def test_each_file_loader_names_the_path_it_read(tmp_path: Path) -> None:
    folder = write_latest(tmp_path / "ml")
    assert load_movielens(folder).source == str(folder)
    log = tmp_path / "log.csv"
    pd.DataFrame({"u": ["a", "b"], "i": [1, 2], "t": [10, 20]}).to_csv(log, index=False)
    assert load_events_file(log, {"user": "u", "item": "i", "timestamp": "t"}).source == str(log)


def test_the_world_is_named_by_its_config_hash_generated_and_cached(world, tmp_path: Path) -> None:
    expected = f"synthetic:{TINY.hash()}"
    assert world.source == expected
    assert load_world(TINY).source == expected  # no cache
    assert load_world(TINY, tmp_path).source == expected  # generated, then cached
    cached = load_world(TINY, tmp_path)  # read back
    assert cached.source == expected
    # derived data keeps naming what was read
    assert with_history(cached, global_temporal_split(cached, test_days=2, val_days=1), 5).source == expected


def test_the_world_loader_lives_with_the_loaders_and_the_generator_does_not_import_it() -> None:
    assert ebr.data.loaders.load_world is ebr.data.loaders.synthetic.load_world
    assert set(ebr.data.loaders.__all__) == {"load_world", "load_movielens", "load_events_file"}
    assert not hasattr(ebr.data.world, "load_world")
    # the loader imports the generator, never the other way round: no import cycle between them
    code = "import sys, ebr.data.world\n"
    code += "print(sorted(m for m in sys.modules if m.startswith('ebr.data.loaders')))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "first_import",
    [
        "import ebr.data.loaders.synthetic",
        "import ebr.data.world.config",
        "from ebr.data.loaders import load_world",
        "import ebr.data.loaders",
    ],
)
def test_loaders_and_world_import_in_any_order(first_import: str) -> None:
    code = f"{first_import}\nfrom ebr.data.world import WorldConfig\n"
    code += "from ebr.data.loaders import load_world\n"
    code += "print(load_world.__module__)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ebr.data.loaders.synthetic"
