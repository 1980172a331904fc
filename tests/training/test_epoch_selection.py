"""Validation loss picks the epoch (`train.select_epoch=best_val_loss`, ebr.training.selection):
`model.pt` holds the epoch with the lowest `val/loss` (bit-identical to a run trained for just
that many epochs), the refit protocol falls back to the last epoch and says so, and the default
writes what it wrote before."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from jobs import REPO, job_env, module_command, run_module

from ebr.models.artifact import load_weights
from ebr.training.checkpoint import checkpoint_path
from ebr.training.selection import BestEpoch, EpochSelection

QUICK = ["data=synthetic_tiny", "trainer.enable_progress_bar=false", "logger=none"]


def _train(run_dir: Path, extra: list[str]) -> dict[str, float]:
    result = run_module("ebr.train", [*QUICK, *extra, f"hydra.run.dir={run_dir}"], timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads((run_dir / "metrics.json").read_text())


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_weights(run_dir / "model.pt", "ebr model artifact")["state_dict"]


@pytest.fixture(scope="module")
def best_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("best")
    _train(run_dir, ["trainer.max_epochs=3", "train.select_epoch=best_val_loss"])
    return run_dir


def test_best_val_loss_exports_the_epoch_with_the_lowest_validation_loss(best_run, tmp_path) -> None:
    metrics = json.loads((best_run / "metrics.json").read_text())
    history = json.loads((best_run / "history.json").read_text())
    best = int(np.argmin(history["val/loss"])) + 1
    assert metrics["train/chosen_epoch"] == best
    assert history["chosen_epoch"] == [best]
    assert metrics["train/chosen_val_loss"] == pytest.approx(min(history["val/loss"]))
    assert metrics["train/select_epoch_fallback"] == 0.0
    assert metrics["train/epochs"] == 3.0, "selection does not stop the training"
    # a run of just `best` epochs has seen the same batches in the same order: the same weights
    short = tmp_path / "short"
    _train(short, [f"trainer.max_epochs={best}"])
    chosen, reference = _weights(best_run), _weights(short)
    assert sorted(chosen) == sorted(reference)
    for key, value in reference.items():
        assert torch.equal(chosen[key], value), key
    if best != 3:  # the tiny world's validation loss rises after the first epoch (docs/training_health.md)
        last = tmp_path / "last"
        _train(last, ["trainer.max_epochs=3"])
        assert any(not torch.equal(chosen[key], value) for key, value in _weights(last).items())


def test_refit_has_no_validation_window_so_the_last_epoch_is_exported(tmp_path) -> None:
    metrics = _train(
        tmp_path / "refit", ["trainer.max_epochs=2", "eval=refit", "train.select_epoch=best_val_loss"]
    )
    assert metrics["train/chosen_epoch"] == 2.0
    assert metrics["train/select_epoch_fallback"] == 1.0
    assert "needs a validation window" in (tmp_path / "refit" / "train.log").read_text()


def test_the_default_records_nothing_new(tmp_path) -> None:
    metrics = _train(tmp_path / "default", ["trainer.max_epochs=1"])
    assert not any(key.startswith(("train/chosen", "train/select_epoch")) for key in metrics)
    assert "chosen_epoch" not in json.loads((tmp_path / "default" / "history.json").read_text())


def _validate(callback: BestEpoch, module: torch.nn.Module, epoch: int, loss: float) -> None:
    trainer = SimpleNamespace(
        sanity_checking=False, current_epoch=epoch, callback_metrics={"val/loss": torch.tensor(loss)}
    )
    callback.on_validation_epoch_end(trainer, module)


def test_best_epoch_keeps_the_lowest_loss_state_and_restores_it() -> None:
    module = torch.nn.Linear(2, 1)
    callback = BestEpoch()
    for epoch, (loss, fill) in enumerate([(3.0, 1.0), (2.0, 2.0), (2.0, 3.0), (4.0, 4.0)]):
        with torch.no_grad():
            module.weight.fill_(fill)
        _validate(callback, module, epoch, loss)
    assert callback.best_epoch == 2, "the lowest loss; a tie keeps the earlier epoch"
    callback.restore(module)
    assert torch.equal(module.weight, torch.full((1, 2), 2.0))
    restored = BestEpoch()
    restored.load_state_dict(callback.state_dict())
    assert restored.best_epoch == 2
    assert torch.equal(restored.state["weight"], callback.state["weight"])


def test_selection_settings() -> None:
    assert EpochSelection.of({}, has_val=True).callbacks() == []
    refit = EpochSelection.of({"select_epoch": "best_val_loss"}, has_val=False)
    assert refit.fallback
    assert refit.callbacks() == []
    (best,) = EpochSelection.of({"select_epoch": "best_val_loss"}, has_val=True).callbacks()
    assert isinstance(best, BestEpoch)
    with pytest.raises(ValueError, match="select_epoch"):
        EpochSelection("best", True)


def test_a_resumed_run_keeps_the_best_epoch_it_saw_before_the_kill(best_run, tmp_path) -> None:
    # step 25 is the third epoch's third batch (11 batches an epoch): the checkpoint holds the best
    # epoch so far (2, the tiny world's best), which the resumed run alone never sees
    run_dir = tmp_path / "killed"
    extra = ["trainer.max_epochs=3", "train.select_epoch=best_val_loss", "train.checkpoint_every_n_steps=25"]
    command = module_command("ebr.train", [*QUICK, *extra, f"hydra.run.dir={run_dir}"])
    with (tmp_path / "killed.log").open("w") as log:
        process = subprocess.Popen(command, cwd=REPO, env=job_env(), stdout=log, stderr=log)
        deadline = time.monotonic() + 900
        while (
            not checkpoint_path(run_dir).exists() and process.poll() is None and time.monotonic() < deadline
        ):
            time.sleep(0.005)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL
    metrics = _train(run_dir, extra)
    assert (
        metrics["train/chosen_epoch"]
        == json.loads((best_run / "metrics.json").read_text())["train/chosen_epoch"]
    )
    chosen, reference = _weights(run_dir), _weights(best_run)
    for key, value in reference.items():
        assert torch.equal(chosen[key], value), key


def test_two_ranks_agree_on_the_best_epoch_and_export_its_sharded_tables(tmp_path) -> None:
    # the validation loss is averaged over the ranks before the choice, and the tables, sharded
    # over both ranks, are assembled on rank 0 for the export and copied back into every rank
    from torch.distributed.launcher.api import elastic_launch
    from two_ranks import two_local_ranks

    def on_two_ranks(run_dir: Path, *extra: str) -> dict[str, float]:
        args = ["-m", "ebr.train", *QUICK, "trainer=torchrun", *extra, f"hydra.run.dir={run_dir}"]
        elastic_launch(two_local_ranks(), entrypoint=sys.executable)(*args)
        return json.loads((run_dir / "metrics.json").read_text())

    metrics = on_two_ranks(tmp_path / "best", "trainer.max_epochs=3", "train.select_epoch=best_val_loss")
    history = json.loads((tmp_path / "best" / "history.json").read_text())
    best = int(np.argmin(history["val/loss"])) + 1
    assert metrics["train/chosen_epoch"] == best
    assert best < 3, "the tiny world's validation loss rises in epoch 3: the state is copied back"
    on_two_ranks(tmp_path / "short", f"trainer.max_epochs={best}")
    chosen, reference = _weights(tmp_path / "best"), _weights(tmp_path / "short")
    for key, value in reference.items():
        assert torch.equal(chosen[key], value), key
