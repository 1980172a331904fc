"""docs/real_data.md's walkthrough of `data=events_file` (a made-up shop's Parquet log) runs as
written: its script makes the files, its data config maps them, and each of its commands (with
`logger=none` added) finishes, from the first baseline to the report."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from jobs import REPO, job_env
from omegaconf import OmegaConf

DOC = REPO / "docs" / "real_data.md"
SECTION = "### Walkthrough: a shop's log"
ENTRY_POINTS = {"ebr-train": "ebr.train", "ebr-report": "ebr.report.cli"}


def _blocks() -> list[tuple[str, str]]:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.index("\n## ", start)
    return [
        (lang, textwrap.dedent(body))
        for lang, body in re.findall(r"```(\w+)\n(.*?)```", text[start:end], re.S)
    ]


def _commands(blocks: list[tuple[str, str]]) -> list[list[str]]:
    """Each shell command of the walkthrough, continuation lines joined, as a python -m call."""
    commands = []
    for lang, body in blocks:
        if lang != "bash":
            continue
        for line in body.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if not words:
                continue
            assert words[0] in ENTRY_POINTS, f"the walkthrough runs only ebr's commands: {line}"
            extra = ["logger=none"] if words[0] == "ebr-train" else []
            commands.append([sys.executable, "-m", ENTRY_POINTS[words[0]], *words[1:], *extra])
    return commands


def test_the_shop_walkthrough_runs_as_written(tmp_path: Path) -> None:
    blocks = _blocks()
    scripts = [body for lang, body in blocks if lang == "python"]
    configs = [body for lang, body in blocks if lang == "yaml"]
    assert len(scripts) == 1
    assert len(configs) == 1
    # the walkthrough as a user's shell runs it: Python's warnings on
    env = job_env(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", PYTHONWARNINGS=None)
    subprocess.run([sys.executable, "-c", scripts[0]], cwd=tmp_path, env=env, check=True, timeout=120)
    config_path = tmp_path / configs[0].splitlines()[0].lstrip("# ").strip()
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(configs[0], encoding="utf-8")

    # the ISO strings and the Unix seconds are the same instants
    iso = pd.read_parquet(tmp_path / "shop" / "events.parquet")
    seconds = pd.read_parquet(tmp_path / "shop" / "events_seconds.parquet")
    assert isinstance(iso["ts"].iloc[0], str)
    assert seconds["ts"].dtype == np.int64
    parsed = pd.to_datetime(iso["ts"], utc=True)
    assert (parsed.map(lambda t: int(t.timestamp())).to_numpy() == seconds["ts"].to_numpy()).all()

    # the mapping as the data config gives it: products' category paths become their interests
    mapping = OmegaConf.load(config_path)
    node = OmegaConf.merge(OmegaConf.load(REPO / "conf" / "data" / "events_file.yaml"), mapping)
    node.pop("defaults")
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        data = instantiate(node)
    finally:
        os.chdir(cwd)
    items = pd.read_parquet(tmp_path / "shop" / "items.parquet").set_index("sku")
    tokens = {t for path in items.loc[data.pins.meta["original_id"], "category"] for t in path.split("|")}
    assert data.n_interests == len(tokens)
    assert len(data.events) == len(iso)

    for command in _commands(blocks):
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"

    runs = tmp_path / "outputs" / "shop"
    by_iso = json.loads((runs / "popularity" / "metrics.json").read_text())
    by_seconds = json.loads((runs / "popularity_seconds" / "metrics.json").read_text())
    assert by_iso["recall@50"] == by_seconds["recall@50"]
    assert by_iso["data/test_engagements"] == by_seconds["data/test_engagements"]
    report = tmp_path / "multirun" / "shop" / "report.md"
    assert report.is_file()
    assert "model=ease" in report.read_text()
