"""Resume after a kill: `ebr-train` SIGKILLed mid-epoch and started again with the same command
ends with the metrics of an uninterrupted run; a checkpoint holds and restores the fused table
optimizer's state (ebr.training.checkpoint)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from jobs import REPO, job_env, module_command, run_module
from omegaconf import OmegaConf

from ebr.runs import WALL_CLOCK_METRICS
from ebr.training.checkpoint import CheckpointMismatchError, checkpoint_path, resume_from

QUICK = ["data=synthetic_tiny", "trainer.enable_progress_bar=false", "logger=none", "trainer.max_epochs=2"]
# 11 batches an epoch on the tiny world: the first checkpoint, after step 15, is epoch 1's 4th batch
EVERY = 15


def _args(run_dir: Path, extra: list[str]) -> list[str]:
    return [*QUICK, *extra, f"hydra.run.dir={run_dir}"]


def _run(run_dir: Path, extra: list[str]) -> subprocess.CompletedProcess:
    return run_module("ebr.train", _args(run_dir, extra))


def _comparable(run_dir: Path) -> dict[str, float]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {key: value for key, value in metrics.items() if key not in WALL_CLOCK_METRICS}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """A default run (no checkpoints) of the same config and seed."""
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    result = _run(run_dir, [])
    assert result.returncode == 0, result.stderr[-4000:]
    assert not (run_dir / "checkpoints").exists(), "a default run writes no checkpoint"
    return run_dir


def _start_and_kill_after_first_checkpoint(run_dir: Path, extra: list[str]) -> int:
    """Start the job, SIGKILL it as soon as its first checkpoint is in place; its exit code."""
    log = (run_dir.parent / f"{run_dir.name}.log").open("w")
    command = module_command("ebr.train", _args(run_dir, extra))
    process = subprocess.Popen(command, cwd=REPO, env=job_env(), stdout=log, stderr=log)
    target = checkpoint_path(run_dir)
    deadline = time.monotonic() + 600
    while not target.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    return process.wait()


def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_metrics(uninterrupted, tmp_path) -> None:
    run_dir = tmp_path / "killed"
    extra = [f"train.checkpoint_every_n_steps={EVERY}"]
    assert _start_and_kill_after_first_checkpoint(run_dir, extra) == -signal.SIGKILL
    assert not (run_dir / "metrics.json").exists()
    saved = torch.load(checkpoint_path(run_dir), map_location="cpu", weights_only=True)
    assert saved["global_step"] == EVERY, "killed before the next checkpoint"
    # mid-epoch: epoch 1 (the second), 4 of its 11 batches done
    assert saved["TwoTowerDataModule"] == {"epoch": 1, "batches_done": EVERY - 11, "batches": 11}
    assert not list(checkpoint_path(run_dir).parent.glob("*.tmp")), "no temporary file is left"

    result = _run(run_dir, extra)  # the same command again
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Restoring states from the checkpoint" in result.stdout + result.stderr
    # exact on CPU: every number, the per-epoch loss curves and the saved tables are bit-identical
    assert _comparable(run_dir) == _comparable(uninterrupted)
    history = json.loads((run_dir / "history.json").read_text())
    assert history == json.loads((uninterrupted / "history.json").read_text())
    resumed = torch.load(run_dir / "model.pt", weights_only=True)["state_dict"]
    reference = torch.load(uninterrupted / "model.pt", weights_only=True)["state_dict"]
    assert resumed.keys() == reference.keys()
    for key, value in reference.items():
        assert torch.equal(resumed[key], value), key
    assert not (run_dir / "checkpoints").exists(), "the checkpoint is deleted once model.pt is saved"


def _examples_trained(run_dir: Path) -> float:
    """The examples `train/examples_per_second` counted: the rate times the seconds it was taken over."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return metrics["train/examples_per_second"] * metrics["train/seconds"]


def test_throughput_after_a_resume_counts_only_the_resumed_steps(uninterrupted, tmp_path) -> None:
    """Issue 32 case 6: after a resume the rate counted every epoch's examples over the resumed
    seconds only (1.8x too high)."""
    batch_size = OmegaConf.load(uninterrupted / ".hydra" / "config.yaml").train.batch_size
    batches = 2 * 11  # two epochs of 11 batches
    assert _examples_trained(uninterrupted) == pytest.approx(batches * batch_size)
    run_dir = tmp_path / "killed"
    extra = [f"train.checkpoint_every_n_steps={EVERY}"]
    assert _start_and_kill_after_first_checkpoint(run_dir, extra) == -signal.SIGKILL
    result = _run(run_dir, extra)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Restoring states from the checkpoint" in result.stdout + result.stderr
    assert _examples_trained(run_dir) == pytest.approx((batches - EVERY) * batch_size)


def test_a_checkpoint_of_another_setup_is_refused(tmp_path) -> None:
    run_dir = tmp_path / "run"
    path = checkpoint_path(run_dir)
    path.parent.mkdir(parents=True)
    torch.save({"ebr_fingerprint": {"seed": "a", "train": "b"}}, path)
    assert resume_from(run_dir, {"seed": "a", "train": "b"}) == path
    with pytest.raises(
        CheckpointMismatchError, match=r"last\.ckpt was written by another.*differs in: train"
    ):
        resume_from(run_dir, {"seed": "a", "train": "c"})
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointMismatchError, match=r"last\.ckpt: cannot read this checkpoint"):
        resume_from(run_dir, {"seed": "a", "train": "b"})


def test_checkpoint_settings_are_checked_before_work(monkeypatch) -> None:
    from hydra import compose, initialize_config_dir

    from ebr.validation import ConfigValidationError, validate_config

    def composed(every: str):
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
            return compose(
                "train", overrides=["data=synthetic_tiny", f"train.checkpoint_every_n_steps={every}"]
            )

    validate_config(composed("5"))
    with pytest.raises(ConfigValidationError, match=r"train\.checkpoint_every_n_steps"):
        validate_config(composed("-1"))
    monkeypatch.setenv("WORLD_SIZE", "2")
    validate_config(composed("5"))  # a multi-rank job checkpoints too (tests/training/test_two_process.py)
    validate_config(composed("0"))


# ---- the fused table optimizer's state, saved and restored in process ---------------------------


@pytest.fixture(scope="module")
def process_group(tmp_path_factory):
    from ebr.training.distributed import ensure_process_group

    created = ensure_process_group(tmp_path_factory.mktemp("pg"))
    yield
    if created and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _module_and_batches(seed: int):
    from ebr.data.batching import FeatureGatherer, make_batch
    from ebr.data.world import WorldConfig, generate_world
    from ebr.models.artifact import build_model
    from ebr.models.features import resolve_features, tower_specs
    from ebr.models.loss import SampledSoftmaxLoss
    from ebr.training.distributed import FusedTableOptimizer
    from ebr.training.module import TwoTowerModule
    from tests.training.tiny_model import tiny_model_config

    world = generate_world(WorldConfig(n_users=300, n_pins=200, n_interests=6, n_days=10))
    features = resolve_features(
        dict.fromkeys(["user_sparse", "user_dense", "pin_sparse", "pin_dense"]), world
    )
    user_spec, pin_spec = tower_specs(world, features)
    torch.manual_seed(seed)
    module = TwoTowerModule(
        model_factory=partial(build_model, tiny_model_config(16, 8, 8), user_spec, pin_spec),
        loss=SampledSoftmaxLoss(),
        sparse_optimizer=FusedTableOptimizer(lr=0.5),
    )
    module.configure_model()
    engagements = world.engagements()
    users = FeatureGatherer(world.users, features["user_sparse"], features["user_dense"])
    pins = FeatureGatherer(world.pins, features["pin_sparse"], features["pin_dense"])
    batches = [
        make_batch(users, pins, engagements["user"].to_numpy()[rows], engagements["pin"].to_numpy()[rows])
        for rows in (np.arange(0, 48), np.arange(48, 96), np.arange(96, 144))
    ]
    return module, module.configure_optimizers(), batches


def _step(module, optimizer, batch) -> None:
    loss = module.training_step(batch, 0)
    optimizer.zero_grad()
    loss.backward()  # the fused optimizer updates the tables (and its accumulators) in backward
    optimizer.step()


def test_a_checkpoint_holds_and_restores_the_fused_optimizer_state(process_group, tmp_path) -> None:
    from ebr.training.distributed import fused_optimizer_state
    from ebr.training.module import FUSED_OPTIMIZER_KEY

    module, optimizer, batches = _module_and_batches(seed=0)
    module.log = lambda *args, **kwargs: None  # no trainer attached: nothing to log to
    for batch in batches[:2]:
        _step(module, optimizer, batch)
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    checkpoint["dense_optimizer"] = optimizer.state_dict()
    torch.save(checkpoint, tmp_path / "state.ckpt")
    saved = torch.load(tmp_path / "state.ckpt", weights_only=True)

    # row-wise Adagrad keeps one accumulator per row: non-zero exactly on the rows the batches used
    accumulators = saved[FUSED_OPTIMIZER_KEY]["user_tower.ebc.embedding_bags.user__user_id.weight"]
    (momentum,) = accumulators.values()
    engaged = torch.cat([batch.user.ids for batch in batches[:2]]).unique()
    assert torch.equal(torch.nonzero(momentum.flatten() > 0).flatten(), engaged.sort().values)
    tables = {key.removeprefix("model.") for key in saved["state_dict"] if ".ebc.embedding_bags." in key}
    assert set(saved[FUSED_OPTIMIZER_KEY]) == tables, "every trainable table's optimizer state is saved"

    other, other_optimizer, _ = _module_and_batches(seed=1)  # other initial weights
    other.log = module.log
    assert not torch.equal(
        other.export_state_dict()["user_tower.projection.weight"],
        module.export_state_dict()["user_tower.projection.weight"],
    )
    other.on_load_checkpoint(saved)
    other.load_state_dict(saved["state_dict"])
    other_optimizer.load_state_dict(saved["dense_optimizer"])
    restored = fused_optimizer_state(other.model)
    assert restored.keys() == saved[FUSED_OPTIMIZER_KEY].keys()
    for param, states in saved[FUSED_OPTIMIZER_KEY].items():
        for name, value in states.items():
            assert torch.equal(restored[param][name], value), (param, name)
    # the restored accumulators are the ones the fused kernel reads: one more step agrees exactly
    _step(module, optimizer, batches[2])
    _step(other, other_optimizer, batches[2])
    expected, got = module.export_state_dict(), other.export_state_dict()
    for key, value in expected.items():
        assert torch.equal(got[key], value), key
