"""`ebr-train` with the sequence user tower (`model/user_encoder=sequence`): a run SIGKILLed mid-epoch
resumes to the uninterrupted run's metrics and tables bit for bit (the dense all-action objective's
draws included), and two `torchrun` ranks train it with the pin tower's sharded ID table shared."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import torch

from tests.test_resume import _comparable, _run, _start_and_kill_after_first_checkpoint

# a small encoder on the tiny world: one epoch of 11 batches, the first checkpoint after batch 4
SEQUENCE = [
    "model/user_encoder=sequence",
    "model.user_encoder.length=8",
    "model.user_encoder.width=16",
    "model.user_encoder.layers=1",
    "trainer.max_epochs=1",
]
EVERY = 4


def _tables(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "model.pt", weights_only=True)["state_dict"]


def test_a_killed_sequence_run_resumes_to_the_uninterrupted_run(tmp_path) -> None:
    extra = [*SEQUENCE, "model.user_encoder.objective=dense_all_action", "model.user_encoder.samples=2"]
    reference = tmp_path / "uninterrupted"
    result = _run(reference, extra)
    assert result.returncode == 0, result.stderr[-4000:]
    killed = tmp_path / "killed"
    resumable = [*extra, f"train.checkpoint_every_n_steps={EVERY}"]
    assert _start_and_kill_after_first_checkpoint(killed, resumable) == -signal.SIGKILL
    assert not (killed / "metrics.json").exists()
    result = _run(killed, resumable)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Restoring states from the checkpoint" in result.stdout + result.stderr
    assert _comparable(killed) == _comparable(reference)
    resumed, uninterrupted = _tables(killed), _tables(reference)
    assert resumed.keys() == uninterrupted.keys()
    assert any(key.startswith("user_tower.sequence.") for key in resumed)
    for key, value in uninterrupted.items():
        assert torch.equal(resumed[key], value), key


def test_two_ranks_train_the_sequence_tower_with_the_shared_pin_table(tmp_path) -> None:
    from torch.distributed.launcher.api import elastic_launch
    from two_ranks import two_local_ranks

    from tests.test_resume import QUICK

    run_dir = tmp_path / "two_ranks"
    args = ["-m", "ebr.train", *QUICK, "trainer=torchrun", *SEQUENCE, "model.user_encoder.pin_table=shared"]
    elastic_launch(two_local_ranks(), entrypoint=sys.executable)(*args, f"hydra.run.dir={run_dir}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train/world_size"] == 2
    assert 0.0 < metrics["recall@100"] <= 1.0
    history = json.loads((run_dir / "history.json").read_text())
    assert all(loss == loss for loss in history["train/loss"])  # finite, not NaN
    tables = _tables(run_dir)
    # shared: the sequence reads the pin tower's pin_id rows, it has no pin table of its own
    assert not any("sequence__" in key for key in tables)
    assert any(key.startswith("user_tower.sequence.transformer.") for key in tables)


def test_a_causal_history_bag_run_trains_and_writes_metrics(tmp_path) -> None:
    run_dir = tmp_path / "causal"
    result = _run(run_dir, ["features.history=true", "features.history_causal=true", "trainer.max_epochs=1"])
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 < metrics["recall@100"] <= 1.0
    artifact = torch.load(run_dir / "model.pt", weights_only=True)
    # model.pt records that training read the causal bags (serving reads the whole-window bag)
    assert artifact["info"]["history_bag"] == "causal"
    assert "history" in artifact["features"]["user_sparse"]
