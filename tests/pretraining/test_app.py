"""`ebr-pretrain` end to end through `ebr.pretrain.main`: the snapshot set, the run files, skip and refuse."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from jobs import run_module

from ebr import pretrain
from ebr.data.schema import CLICK
from ebr.data.world import WorldConfig, generate_world
from ebr.pretraining.selection import list_snapshots, select_snapshot

DAY = 86_400
WORLD = {"n_users": 300, "n_pins": 150, "n_interests": 12, "n_days": 40}
ARGS = [
    "data=synthetic_tiny",
    *(f"data.config.{key}={value}" for key, value in WORLD.items()),
    "split.train_days=7",
    "pretrain.snapshot.end=train_end",
    "pretrain.batch_size=128",
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "logger=csv",
]


def _main(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["ebr-pretrain", *args])
    pretrain.main()


@pytest.fixture(scope="module")
def world():
    return generate_world(WorldConfig(**WORLD))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("pretrain") / "run"
    with pytest.MonkeyPatch.context() as monkeypatch:
        _main(monkeypatch, [*ARGS, f"hydra.run.dir={run_dir}"])
    return run_dir


def test_a_job_writes_the_snapshot_set_and_the_run_files(run_dir: Path, world) -> None:
    for name in ("metrics.json", "run.json", ".outcome.json", ".hydra/config.yaml", ".hydra/overrides.yaml"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / ".outcome.json").read_text())["status"] == "finished"
    record = json.loads((run_dir / "run.json").read_text())
    source = f"synthetic:{WorldConfig(**WORLD).hash()}"
    assert record["info"]["data_source"] == source
    # the windows, from the split's definition: test = the last 7 days, val the 3 before, train the 7 before
    end = int(world.events["timestamp"].max()) + 1
    train_start, train_end = end - 17 * DAY, end - 10 * DAY
    expected = [(train_end - 14 * DAY, train_end)]  # end=train_end: the newest overlaps training
    stop = train_start
    while stop - 14 * DAY >= int(world.events["timestamp"].min()):
        expected.append((stop - 14 * DAY, stop))
        stop -= 7 * DAY
    snapshots = list_snapshots(run_dir / "snapshots")
    assert sorted((s.start, s.end) for s in snapshots) == sorted(expected)
    assert len(expected) == 3
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["snapshots"] == 3.0
    engaged = world.events[world.events["event"] >= CLICK]
    for snapshot in snapshots:
        manifest = snapshot.manifest
        assert manifest["data_source"] == source
        in_window = engaged[(engaged.timestamp >= snapshot.start) & (engaged.timestamp < snapshot.end)]
        assert manifest["examples"] == len(in_window)
        assert manifest["overlaps_train"] == (snapshot.end > train_start)
        tables = torch.load(snapshot.path / "tables.pt", weights_only=True)
        ids = torch.load(snapshot.path / "ids.pt", weights_only=True)
        assert ids["user"].tolist() == sorted(set(in_window.user.tolist()))
        assert ids["pin"].tolist() == sorted(set(in_window.pin.tolist()))
        assert (
            tables["user"].shape
            == (manifest["rows"]["user"], manifest["embedding_dim"])
            == (len(ids["user"]), 32)
        )
        assert np.isfinite(tables["pin"].numpy()).all()
        assert manifest["config"]["pretrain"]["snapshot"]["end"] == "train_end"
        assert len(manifest["epoch_losses"]) == 2
    # the two policies, on what the job wrote
    assert select_snapshot(run_dir / "snapshots", "latest", train_start, source).end == train_end
    assert select_snapshot(run_dir / "snapshots", "latest_no_overlap", train_start, source).end == train_start


def test_the_same_job_again_is_skipped_and_another_config_refused(run_dir: Path, monkeypatch) -> None:
    written = {p: p.stat().st_mtime_ns for p in (run_dir / "snapshots").rglob("*.pt")}
    _main(monkeypatch, [*ARGS, f"hydra.run.dir={run_dir}"])
    assert json.loads((run_dir / ".outcome.json").read_text())["status"] == "skipped"
    with pytest.raises(SystemExit):
        _main(monkeypatch, [*ARGS, "pretrain.embedding_dim=8", f"hydra.run.dir={run_dir}"])
    outcome = json.loads((run_dir / ".outcome.json").read_text())
    assert outcome["status"] == "refused"
    assert "another config" in outcome["message"]
    assert {p: p.stat().st_mtime_ns for p in (run_dir / "snapshots").rglob("*.pt")} == written


def test_a_mistyped_key_fails_before_any_work(tmp_path: Path, monkeypatch, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        _main(monkeypatch, ["pretrain.embeding_dim=8", f"hydra.run.dir={tmp_path}"])
    assert exit_.value.code == 2
    assert "pretrain.embedding_dim" in capsys.readouterr().err
    assert not (tmp_path / ".outcome.json").exists()


def test_the_same_config_and_seed_write_bit_identical_snapshots(run_dir: Path, tmp_path: Path) -> None:
    """Determinism of pre-training: the fixture's job again, in a fresh process, into another run
    directory: every snapshot's tables and ids are bit-identical, and so are its epoch losses."""
    again = tmp_path / "again"
    result = run_module("ebr.pretrain", [*ARGS, f"hydra.run.dir={again}"])
    assert result.returncode == 0, result.stderr[-4000:]
    first, second = list_snapshots(run_dir / "snapshots"), list_snapshots(again / "snapshots")
    assert [s.path.name for s in first] == [s.path.name for s in second]
    assert len(first) == 3
    for one, other in zip(first, second):
        for name in ("tables.pt", "ids.pt"):
            expected = torch.load(one.path / name, weights_only=True)
            got = torch.load(other.path / name, weights_only=True)
            assert expected.keys() == got.keys() == {"user", "pin"}
            for side in expected:
                assert torch.equal(expected[side], got[side]), (one.path.name, name, side)
        assert one.manifest["epoch_losses"] == other.manifest["epoch_losses"]
