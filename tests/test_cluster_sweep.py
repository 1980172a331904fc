"""Cluster sweeps through Hydra's submitit launcher: `submitit_local` runs the code path of
`submitit_slurm` on this machine, including a multi-task job per array task."""

import json
import os
from pathlib import Path

import pytest
from jobs import run_module

from ebr.runs.cluster import RENDEZVOUS_ENV, adopt_cluster_task


@pytest.fixture(scope="module")
def two_job_sweep(tmp_path_factory) -> Path:
    """Two jobs (seeds 0 and 1), each a two-task job: four processes, two process groups."""
    sweep = tmp_path_factory.mktemp("submitit") / "sweep"
    args = [
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.tasks_per_node=2",
        "hydra.launcher.timeout_min=10",
        "trainer=torchrun",
        "data=synthetic_tiny",
        "trainer.max_epochs=1",
        "seed=0,1",
        f"hydra.sweep.dir={sweep}",
    ]
    result = run_module("ebr.train", args)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "sweep: 2 finished" in result.stdout + result.stderr
    return sweep


def test_each_array_task_trains_as_one_two_rank_group_and_writes_once(two_job_sweep):
    for job in ("0", "1"):
        run_dir = two_job_sweep / job
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["train/world_size"] == 2.0
        assert 0.0 < metrics["recall@100"] <= 1.0
        placed = json.loads((run_dir / "sharding.json").read_text())
        assert placed["world_size"] == 2
        assert all(placed["ranks"]), "every task holds table shards"
        # rank 0 alone logged: one offline wandb run per job
        assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    # submitit kept each job's own logs, one per task
    logs = list((two_job_sweep / ".submitit").rglob("*_log.out"))
    assert len(logs) == 4, sorted(p.name for p in logs)
    seeds = {json.loads((two_job_sweep / j / "run.json").read_text())["config"]["seed"] for j in ("0", "1")}
    assert seeds == {0, 1}


def test_outside_a_cluster_job_nothing_is_exported(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k != "SUBMITIT_EXECUTOR"})
    assert adopt_cluster_task(tmp_path) is False
    assert RENDEZVOUS_ENV not in os.environ


def test_a_multi_task_job_exports_its_ranks_and_a_rendezvous_of_its_own(monkeypatch, tmp_path):
    # the variables submitit's local executor gives the second of two tasks of job 4242; a copy of
    # the environment, so what the function exports never reaches the later tests' processes
    exported = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", RENDEZVOUS_ENV)
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k not in exported})
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    monkeypatch.setenv("SUBMITIT_LOCAL_JOB_ID", "4242")
    monkeypatch.setenv("SUBMITIT_LOCAL_NTASKS", "2")
    monkeypatch.setenv("SUBMITIT_LOCAL_LOCALID", "1")
    monkeypatch.setenv("SUBMITIT_LOCAL_GLOBALID", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert adopt_cluster_task(tmp_path) is True
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == ("1", "2", "1")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5", "each task keeps its own GPU of the node"
    rendezvous = Path(os.environ[RENDEZVOUS_ENV])
    assert rendezvous.parent == tmp_path.resolve()
    assert rendezvous.name == ".process_group-4242-0"


def test_the_tests_above_left_no_rank_in_this_processs_environment():
    assert not {"WORLD_SIZE", "RANK", RENDEZVOUS_ENV} & set(os.environ)
