"""`model/id_embedding` through the real command lines on a tiny world: `ebr-pretrain` writes a
snapshot set (one overlapping the training window), `ebr-train` picks one by policy, records it,
serves frozen snapshot rows and reports `id_coverage/*`; `none` drops the ID features."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from jobs import REPO, run_module

from ebr.pretraining.selection import SnapshotSelectionError, list_snapshots
from ebr.pretraining.snapshots import snapshot_name

WORLD = [
    "data=synthetic_tiny",
    "data.config.n_days=40",
    "data.config.n_users=400",
    "data.config.n_pins=300",
    "split.train_days=7",
    "logger=none",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
]


def _run(module: str, args: list[str]) -> subprocess.CompletedProcess:
    return run_module(module, [*WORLD, *args])


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("snapshots")
    result = _run(
        "ebr.pretrain",
        [
            "pretrain.snapshot.end=train_end",
            f"pretrain.snapshot.dir={directory}",
            f"hydra.run.dir={tmp_path_factory.mktemp('pretrain')}",
        ],
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return directory


def _train(tmp_path: Path, name: str, args: list[str]) -> tuple[Path, subprocess.CompletedProcess]:
    run_dir = tmp_path / name
    return run_dir, _run("ebr.train", [*args, f"hydra.run.dir={run_dir}"])


def _pretrained(snapshots: Path, policy: str) -> list[str]:
    return [
        "model/id_embedding=frozen_p05",
        f"model.id_embedding.snapshot_dir={snapshots}",
        f"model.id_embedding.snapshot_policy={policy}",
    ]


def test_policies_choose_their_snapshot_and_frozen_rows_are_the_snapshot(snapshots, tmp_path):
    found = list_snapshots(snapshots)
    overlapping = [s for s in found if s.manifest["overlaps_train"]]
    clean = [s for s in found if not s.manifest["overlaps_train"]]
    listed = [s.describe() for s in found]
    assert len(overlapping) == 1, listed
    assert len(clean) >= 2, listed
    expected = {"latest": overlapping[0], "latest_no_overlap": max(clean, key=lambda s: s.end)}
    for policy, snapshot in expected.items():
        run_dir, result = _train(tmp_path, policy, _pretrained(snapshots, policy))
        assert result.returncode == 0, result.stderr[-4000:]
        info = json.loads((run_dir / "run.json").read_text())["info"]["id_embedding"]
        assert info["snapshot"]["path"] == str(snapshot.path)
        assert info["snapshot"]["window"]["start"] == snapshot.start
        assert info["snapshot"]["window"]["end"] == snapshot.end
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert 0.0 < metrics["id_coverage/user"] <= 1.0
        assert 0.0 < metrics["id_coverage/pin"] <= 1.0
        assert metrics["id_embedding/snapshot_overlaps_train"] == float(policy == "latest")
        assert 0.0 <= metrics["recall@100"] <= 1.0
        # frozen: the saved tables are the snapshot's rows bit for bit, mapped raw id -> row
        payload = torch.load(run_dir / "model.pt", weights_only=False)
        tables = torch.load(snapshot.path / "tables.pt", weights_only=True)
        ids = torch.load(snapshot.path / "ids.pt", weights_only=True)
        state = payload["state_dict"]
        for side, feature in (("user", "user_id"), ("pin", "pin_id")):
            weight = state[f"{side}_tower.id_ebc.embedding_bags.{side}__{feature}.weight"]
            assert torch.equal(weight, tables[side])
            mapping = state[f"{side}_tower.id_rows"].numpy()
            known = ids[side].numpy()
            np.testing.assert_array_equal(mapping[known], np.arange(len(known)))
            assert (np.delete(mapping, known) == -1).all()


def test_coverage_is_the_share_of_test_users_and_corpus_pins_in_the_snapshot(snapshots, tmp_path):
    """Recomputed here from the snapshot's ids and the split, not from the retriever."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    from ebr.evaluation.task import build_eval_task
    from ebr.serving.corpus import training_window_corpus

    run_dir, result = _train(tmp_path, "coverage", _pretrained(snapshots, "latest_no_overlap"))
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    path = json.loads((run_dir / "run.json").read_text())["info"]["id_embedding"]["snapshot"]["path"]
    ids = torch.load(Path(path) / "ids.pt", weights_only=True)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=WORLD[:5])
    GlobalHydra.instance().clear()
    data = instantiate(cfg.data)
    split = instantiate(cfg.split)(data)
    corpus = training_window_corpus(split)
    task = build_eval_task(split, corpus, window="test", exclude_train=cfg.eval.exclude_train)
    assert metrics["id_coverage/user"] == pytest.approx(np.isin(task.user_ids, ids["user"].numpy()).mean())
    assert metrics["id_coverage/pin"] == pytest.approx(np.isin(corpus, ids["pin"].numpy()).mean())
    assert metrics["id_coverage/pin"] < 1.0, "a window before training misses some training pins"


def test_no_qualifying_snapshot_stops_the_run_listing_the_snapshots(snapshots, tmp_path):
    only_overlapping = tmp_path / "overlapping"
    only_overlapping.mkdir()
    (newest,) = [s for s in list_snapshots(snapshots) if s.manifest["overlaps_train"]]
    shutil.copytree(newest.path, only_overlapping / newest.path.name)
    run_dir, result = _train(tmp_path, "none_qualifies", _pretrained(only_overlapping, "latest_no_overlap"))
    assert result.returncode != 0
    error = (run_dir / "error.txt").read_text()
    assert SnapshotSelectionError.__name__ in error
    assert "no snapshot" in error
    assert newest.path.name in error
    assert "window" in error
    assert not (run_dir / "metrics.json").exists()


def test_none_removes_the_id_features(tmp_path):
    run_dir, result = _train(tmp_path, "none", ["model/id_embedding=none"])
    assert result.returncode == 0, result.stderr[-4000:]
    payload = torch.load(run_dir / "model.pt", weights_only=False)
    assert "user_id" not in payload["features"]["user_sparse"]
    assert "pin_id" not in payload["features"]["pin_sparse"]
    assert not any("user_id" in key or "pin_id" in key for key in payload["state_dict"])
    assert "country" in payload["features"]["user_sparse"], "the other features stay"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "id_coverage/user" not in metrics
    assert json.loads((run_dir / "run.json").read_text())["info"]["id_embedding"] == {"mode": "none"}


def test_two_ranks_train_around_a_replicated_frozen_table(snapshots, tmp_path):
    """torchrun-style: the frozen tables are outside the sharding plan on both ranks, and stay the
    snapshot's rows through a two-rank job."""
    run_dir = tmp_path / "two_ranks"
    result = run_module(
        "torch.distributed.run",
        [
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "ebr.train",
            *WORLD,
            *_pretrained(snapshots, "latest_no_overlap"),
            f"hydra.run.dir={run_dir}",
        ],
    )
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train/world_size"] == 2.0
    assert "id_coverage/user" in metrics
    path = Path(json.loads((run_dir / "run.json").read_text())["info"]["id_embedding"]["snapshot"]["path"])
    tables = torch.load(path / "tables.pt", weights_only=True)
    state = torch.load(run_dir / "model.pt", weights_only=False)["state_dict"]
    assert torch.equal(state["user_tower.id_ebc.embedding_bags.user__user_id.weight"], tables["user"])
    assert torch.equal(state["pin_tower.id_ebc.embedding_bags.pin__pin_id.weight"], tables["pin"])


def test_a_damaged_newest_snapshot_fails_the_job_naming_it(snapshots, tmp_path):
    """Issue 32 case 3: the newest qualifying snapshot's manifest deleted: an older one was chosen, exit 0."""
    copy = tmp_path / "set"
    shutil.copytree(snapshots, copy)
    clean = sorted((s for s in list_snapshots(copy) if not s.manifest["overlaps_train"]), key=lambda s: s.end)
    newest, older = clean[-1], clean[-2]
    (newest.path / "manifest.json").unlink()
    run_dir, result = _train(tmp_path, "damaged", _pretrained(copy, "latest_no_overlap"))
    assert result.returncode != 0
    error = (run_dir / "error.txt").read_text()
    assert SnapshotSelectionError.__name__ in error
    assert str(newest.path) in error
    assert "no readable manifest.json" in error
    assert "model.id_embedding.skip_damaged=true" in error
    assert not (run_dir / "metrics.json").exists()
    # opted in: the next older snapshot, with the skip logged
    args = [*_pretrained(copy, "latest_no_overlap"), "model.id_embedding.skip_damaged=true"]
    run_dir, result = _train(tmp_path, "skipped", args)
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"skipping snapshot {newest.path}" in result.stdout + result.stderr
    info = json.loads((run_dir / "run.json").read_text())["info"]["id_embedding"]["snapshot"]
    assert info["path"] == str(older.path)
    assert info["verified"] is True


def test_an_overlapping_snapshot_whose_window_was_edited_is_refused(snapshots, tmp_path):
    """Issue 32 case 4: an overlapping snapshot's manifest (and name) edited to end where training starts
    passed `latest_no_overlap` and was reported as not overlapping; its events now say otherwise."""
    (overlapping,) = [s for s in list_snapshots(snapshots) if s.manifest["overlaps_train"]]
    train_start = int(overlapping.manifest["train_window"]["start"])
    edited = tmp_path / "edited"
    edited.mkdir()
    start = train_start - (overlapping.end - overlapping.start)
    target = edited / snapshot_name(start, train_start)
    shutil.copytree(overlapping.path, target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["window"] = {**manifest["window"], "start": start, "end": train_start}
    manifest["overlaps_train"] = False
    (target / "manifest.json").write_text(json.dumps(manifest))
    run_dir, result = _train(tmp_path, "edited", _pretrained(edited, "latest_no_overlap"))
    assert result.returncode != 0
    error = (run_dir / "error.txt").read_text()
    assert str(target) in error
    assert "it was trained on (the window was edited, or the data changed)" in error
