"""`ebr-pretrain` on two CPU processes (elastic_launch): one snapshot set from tables sharded over ranks."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from torch.distributed.launcher.api import elastic_launch
from two_ranks import two_local_ranks

from ebr.data.world import WorldConfig
from ebr.pretraining.selection import list_snapshots

WORLD = {"n_users": 300, "n_pins": 150, "n_interests": 12, "n_days": 40}


def test_two_ranks_write_one_snapshot_set(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    os.environ.setdefault("WANDB_MODE", "offline")
    args = [
        "-m",
        "ebr.pretrain",
        "data=synthetic_tiny",
        *(f"data.config.{key}={value}" for key, value in WORLD.items()),
        "split.train_days=7",
        "pretrain.snapshot.max_snapshots=2",
        "pretrain.batch_size=128",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "logger=csv",
        f"hydra.run.dir={run_dir}",
    ]
    elastic_launch(two_local_ranks(), entrypoint=sys.executable)(*args)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["pretrain/world_size"] == 2.0, "the job must have trained as one two-rank group"
    snapshots = list_snapshots(run_dir / "snapshots")
    assert len(snapshots) == 2
    assert sorted(p.name for p in (run_dir / "snapshots").iterdir()) == sorted(s.path.name for s in snapshots)
    for snapshot in snapshots:
        assert snapshot.manifest["world_size"] == 2
        assert snapshot.data_source == f"synthetic:{WorldConfig(**WORLD).hash()}"
        tables = torch.load(snapshot.path / "tables.pt", weights_only=True)
        # gathered from both ranks' shards: every row trained, none left at the gather's zeros
        for side in ("user", "pin"):
            assert tables[side].shape[0] == snapshot.manifest["rows"][side]
            assert (tables[side].norm(dim=1) > 0).all(), side
    assert json.loads((run_dir / ".outcome.json").read_text())["status"] == "finished"
