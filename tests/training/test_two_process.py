"""Two CPU processes through elastic_launch: tables sharded across ranks, trained, gathered, served."""

import numpy as np
import pytest
import torch
from tiny_model import tiny_model_config
from torch.distributed.launcher.api import elastic_launch
from two_ranks import two_local_ranks

from ebr.runs import WALL_CLOCK_METRICS

MODEL_CONFIG = tiny_model_config(16, 8, 8)


def _worker(sharding: str) -> dict:
    import torch.distributed as dist

    from ebr.data.batching import FeatureGatherer, make_batch
    from ebr.data.world import WorldConfig, generate_world
    from ebr.models.artifact import build_model
    from ebr.models.loss import SampledSoftmaxLoss
    from ebr.models.tower import TowerSpec
    from ebr.training.distributed import (
        FusedTableOptimizer,
        dense_parameters,
        dense_state_dict,
        shard_model,
    )

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    world = generate_world(WorldConfig(n_users=200, n_pins=120, n_interests=5, n_days=8))
    user_features, pin_features = ["user_id", "country", "interests"], ["pin_id", "interest", "category"]
    user_spec = TowerSpec("user", {f: world.users.categorical[f].cardinality for f in user_features})
    pin_spec = TowerSpec("pin", {f: world.pins.categorical[f].cardinality for f in pin_features})
    torch.manual_seed(0)
    model = shard_model(
        build_model(MODEL_CONFIG, user_spec, pin_spec),
        torch.device("cpu"),
        sharding,
        FusedTableOptimizer(lr=0.5),
    )
    loss_fn = SampledSoftmaxLoss()
    optimizer = torch.optim.Adam(dense_parameters(model), lr=1e-2)
    engagements = world.engagements()
    users = FeatureGatherer(world.users, user_features, [])
    pins = FeatureGatherer(world.pins, pin_features, [])
    engaged_users, engaged_pins = engagements["user"].to_numpy(), engagements["pin"].to_numpy()
    # each rank trains on its own slice, as data-parallel ranks do
    rows = np.arange(rank * 32, rank * 32 + 32)
    batch = make_batch(users, pins, engaged_users[rows], engaged_pins[rows])
    for _ in range(3):
        user, pin, _ = model(batch)
        loss = loss_fn(user, pin, batch.pin.ids)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    probe_rows = np.arange(40)
    probe = make_batch(
        users, pins, engagements["user"].to_numpy()[probe_rows], engagements["pin"].to_numpy()[probe_rows]
    )
    model.eval()
    with torch.no_grad():
        sharded_user, _, _ = model(probe)
    state = dense_state_dict(model)  # a collective: every rank calls it
    placement = {
        name: [shard.metadata.placement.rank() for shard in tensor.local_shards()]
        for name, tensor in model.state_dict().items()
        if hasattr(tensor, "local_shards")
    }
    dist.destroy_process_group()
    if rank != 0:
        return {"placement": placement}
    served = build_model(MODEL_CONFIG, user_spec, pin_spec)
    served.load_state_dict(state)
    served.eval()
    with torch.no_grad():
        plain_user, _, _ = served(probe)
    return {"placement": placement, "sharded": sharded_user, "plain": plain_user}


def _launch(sharding: str, tmp_path) -> dict:
    return elastic_launch(two_local_ranks(), entrypoint=_worker)(sharding)


def test_table_wise_tables_live_on_both_ranks_and_the_gathered_model_serves_identically(tmp_path):
    results = _launch("table_wise", tmp_path)
    owned = {rank: {n for n, ranks in results[rank]["placement"].items() if ranks} for rank in (0, 1)}
    assert owned[0], "table-wise sharding must place tables on rank 0"
    assert owned[1], "table-wise sharding must place tables on rank 1"
    assert not owned[0] & owned[1], "each table lives on exactly one rank"
    torch.testing.assert_close(results[0]["plain"], results[0]["sharded"], rtol=1e-5, atol=1e-6)


TINY_JOB = ["data=synthetic_tiny", "trainer.max_epochs=1", "trainer.enable_progress_bar=false"]


def _train_on_two_ranks(run_dir, *extra: str) -> None:
    """torchrun-style launch of the real entry point on two gloo ranks."""
    import os
    import sys

    os.environ.setdefault("WANDB_MODE", "offline")
    args = ["-m", "ebr.train", *TINY_JOB, "trainer=torchrun", *extra, f"hydra.run.dir={run_dir}"]
    elastic_launch(two_local_ranks(), entrypoint=sys.executable)(*args)


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("two_ranks") / "run"
    _train_on_two_ranks(run_dir)
    return run_dir


@pytest.fixture(scope="module")
def column_wise_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("column_wise") / "run"
    _train_on_two_ranks(run_dir, "train.sharding=column_wise")
    return run_dir


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory):
    """The same job in one process (the reference of the two-rank runs' recall)."""
    import os
    import subprocess
    import sys

    run_dir = tmp_path_factory.mktemp("one_process") / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    result = subprocess.run(
        [sys.executable, "-m", "ebr.train", *TINY_JOB, f"hydra.run.dir={run_dir}"],
        env={**env, "WANDB_MODE": "offline"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def test_ebr_train_itself_on_two_gloo_ranks_writes_one_set_of_results(two_rank_run):
    """Every rank trains, only rank 0 writes and logs."""
    import json

    run_dir = two_rank_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train/world_size"] == 2.0, "the job must have trained as one two-rank group"
    assert 0.0 < metrics["recall@100"] <= 1.0
    assert sorted(p.name for p in run_dir.glob("*.pt")) == ["model.pt"]
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    assert (
        json.loads((run_dir / "run.json").read_text())["arm"]
        == "data=synthetic_tiny,trainer.max_epochs=1,trainer=torchrun"
    )


def test_the_same_two_rank_job_gives_the_same_metrics_and_model_twice(two_rank_run, tmp_path):
    """Determinism of the multi-process path: a second launch of the same config and seed."""
    import json

    again = tmp_path / "again"
    _train_on_two_ranks(again)

    def comparable(run_dir):
        metrics = json.loads((run_dir / "metrics.json").read_text())
        return {key: value for key, value in metrics.items() if key not in WALL_CLOCK_METRICS}

    assert comparable(again) == comparable(two_rank_run)
    first = torch.load(two_rank_run / "model.pt", weights_only=True)["state_dict"]
    second = torch.load(again / "model.pt", weights_only=True)["state_dict"]
    assert first.keys() == second.keys()
    for key, value in first.items():
        assert torch.equal(second[key], value), key


def _covered_once(shards: list[dict], shape: list[int]) -> bool:
    """Whether the shards tile a table of `shape` exactly (no cell twice, none missed)."""
    cover = np.zeros(shape, dtype=np.int64)
    for shard in shards:
        region = tuple(slice(o, o + n) for o, n in zip(shard["offsets"], shard["sizes"]))
        cover[region] += 1
    return bool((cover == 1).all())


@pytest.mark.parametrize("plan", ["table_wise", "column_wise"])
def test_each_rank_holds_only_its_shards_and_recall_matches_one_process(
    plan, two_rank_run, column_wise_run, one_process_run
):
    """The placed plan (sharding.json): each rank a strict part of every table's cells, the ranks
    together every cell exactly once; recall@100 within 0.03 of the one-process run. Not exact:
    each rank's loss sees the in-batch negatives of its half of the batch only, and the tables sum
    the ranks' gradients where the dense layers average them."""
    import json

    run_dir = two_rank_run if plan == "table_wise" else column_wise_run
    placed = json.loads((run_dir / "sharding.json").read_text())
    assert placed["sharding"] == plan
    assert placed["world_size"] == 2
    ranks = placed["ranks"]
    state = torch.load(run_dir / "model.pt", weights_only=True)["state_dict"]
    tables = set(ranks[0]) | set(ranks[1])
    assert tables
    assert all(name in state for name in tables)
    for name in tables:
        shards = ranks[0].get(name, []) + ranks[1].get(name, [])
        assert _covered_once(shards, list(state[name].shape)), name
    # a rank never holds a table's every cell when the plan split the tables between ranks
    cells = {rank: sum(int(np.prod(s["sizes"])) for t in ranks[rank].values() for s in t) for rank in (0, 1)}
    total = sum(int(np.prod(state[name].shape)) for name in tables)
    assert 0 < cells[0] < total
    assert 0 < cells[1] < total
    assert cells[0] + cells[1] == total
    two = json.loads((run_dir / "metrics.json").read_text())
    one = json.loads((one_process_run / "metrics.json").read_text())
    assert two["train/world_size"] == 2.0
    assert one["train/world_size"] == 1.0
    assert abs(two["recall@100"] - one["recall@100"]) < 0.03, (two["recall@100"], one["recall@100"])


def test_a_two_rank_job_killed_mid_epoch_resumes_to_the_uninterrupted_metrics(two_rank_run, tmp_path):
    """torchrun itself, SIGKILLed (launcher and both ranks) once its first checkpoint is in place,
    then the same command again: it resumes (every rank reading rank 0's file and taking its own
    shards' regions, its own RNG states) and ends bit-identical to the uninterrupted two-rank run."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    from two_ranks import process_tree

    from ebr.training.checkpoint import checkpoint_path

    run_dir = tmp_path / "killed"
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"),
        *("-m", "ebr.train", *TINY_JOB, "trainer=torchrun", "train.checkpoint_every_n_steps=4"),
        f"hydra.run.dir={run_dir}",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(WANDB_MODE="offline", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    with (tmp_path / "killed.log").open("w") as log:
        launcher = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 600
        while (
            not checkpoint_path(run_dir).exists() and launcher.poll() is None and time.monotonic() < deadline
        ):
            time.sleep(0.005)
        assert launcher.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        for pid in reversed(process_tree(launcher.pid)):  # the ranks first, then torchrun
            os.kill(pid, signal.SIGKILL)
        launcher.wait()
    assert not (run_dir / "metrics.json").exists()
    saved = torch.load(checkpoint_path(run_dir), map_location="cpu", weights_only=True)
    assert saved["global_step"] == 4, "killed before the next checkpoint"
    assert saved["TwoTowerDataModule"] == {"epoch": 0, "batches_done": 4, "batches": 11}
    assert len(saved["ebr_rng_states"]) == 2, "one RNG state per rank"

    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Restoring states from the checkpoint" in result.stdout + result.stderr

    def comparable(directory):
        metrics = json.loads((directory / "metrics.json").read_text())
        return {key: value for key, value in metrics.items() if key not in WALL_CLOCK_METRICS}

    assert comparable(run_dir) == comparable(two_rank_run)
    assert json.loads((run_dir / "history.json").read_text()) == json.loads(
        (two_rank_run / "history.json").read_text()
    )
    resumed = torch.load(run_dir / "model.pt", weights_only=True)["state_dict"]
    reference = torch.load(two_rank_run / "model.pt", weights_only=True)["state_dict"]
    assert resumed.keys() == reference.keys()
    for key, value in reference.items():
        assert torch.equal(resumed[key], value), key
    assert not (run_dir / "checkpoints").exists(), "the checkpoint is deleted once model.pt is saved"
