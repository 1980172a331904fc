"""Crashes that compute no wrong number still end the way every failure does (issue 32, case 9):
through the job wrapper (a one-line message naming what to change, ``error.txt``, a failed
outcome, a non-zero exit), or, outside any job, as one line naming the file to fix."""

from __future__ import annotations

import json
import subprocess

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from jobs import REPO, run_module

from ebr.models.artifact import ARTIFACT_FORMAT
from ebr.report.sweep import load_sweep
from ebr.runs import ERROR_FILE, OUTCOME_FILE
from ebr.serving.checkpoint import resolve_checkpoint
from ebr.validation import ConfigValidationError, validate_config

QUICK = ["logger=none", "trainer.enable_progress_bar=false"]


def _python(module: str, args: list[str]) -> subprocess.CompletedProcess:
    return run_module(module, [*args, *QUICK], timeout=300)


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["data=events_file"], "data.path"),
        (["data=synthetic_tiny", "model/id_embedding=pretrained"], "model.id_embedding.snapshot_dir"),
    ],
)
def test_a_missing_mandatory_value_fails_through_the_job_wrapper(tmp_path, args, key) -> None:
    result = _python("ebr.train", [*args, f"hydra.run.dir={tmp_path}"])
    assert result.returncode == 1
    console = result.stdout + result.stderr  # Hydra logs to stdout, prints its last line to stderr
    assert "Traceback" not in console, console[-3000:]
    assert f"{key} is required" in console
    assert f"{key}=..." in console, "the message says how to set it"
    assert f"{key} is required" in (tmp_path / ERROR_FILE).read_text()
    assert json.loads((tmp_path / OUTCOME_FILE).read_text())["status"] == "failed"


def test_a_sweep_of_jobs_missing_a_value_is_reported_failed_not_missing(tmp_path) -> None:
    sweep = tmp_path / "sweep"
    result = _python("ebr.train", ["-m", "data=events_file", "seed=0,1", f"hydra.sweep.dir={sweep}"])
    assert result.returncode == 1, "the sweep ran both jobs and its tally failed"
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    read = load_sweep(sweep)
    assert [p.reason for p in read.missing] == []
    assert len(read.failed) == 2
    assert all("data.path is required" in p.reason for p in read.failed)


def test_a_corrupt_study_storage_is_one_line_naming_the_file(tmp_path) -> None:
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "optuna.db").write_bytes(b"SQLite format 3\0" + b"\x07" * 4000)
    search = ["hparams_search=two_tower_synthetic", "data=synthetic_tiny", "hydra.sweeper.n_trials=1"]
    result = _python("ebr.train", [*search, f"hydra.sweep.dir={sweep}"])
    assert result.returncode == 1
    console = result.stdout + result.stderr
    assert "Traceback" not in console, console[-3000:]
    assert "sqlalchemy" not in console
    assert f"{sweep / 'optuna.db'} cannot be read" in result.stderr
    assert "restore it" in result.stderr
    assert "remove it" in result.stderr
    assert not (sweep / "0").exists(), "no trial ran"


@pytest.fixture
def composed():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        yield lambda overrides: compose("train", overrides=["data=synthetic_tiny", *overrides])
    GlobalHydra.instance().clear()


def test_a_snapshot_directory_is_checked_before_any_work(composed, tmp_path) -> None:
    pretrained = "model/id_embedding=pretrained"
    cases = [
        (tmp_path / "nowhere", "no such directory"),
        (tmp_path, "holds no snapshot-* folder (run ebr-pretrain first"),
    ]
    for directory, reason in cases:
        cfg = composed([pretrained, f"model.id_embedding.snapshot_dir={directory}"])
        with pytest.raises(ConfigValidationError, match=r"model\.id_embedding\.snapshot_dir") as raised:
            validate_config(cfg)
        assert reason in str(raised.value)
    # an ebr-pretrain run directory: its snapshots/ is named
    (tmp_path / "snapshots" / "snapshot-00000000000-00000086400").mkdir(parents=True)
    with pytest.raises(ConfigValidationError, match="its snapshots/ does"):
        validate_config(composed([pretrained, f"model.id_embedding.snapshot_dir={tmp_path}"]))
    validate_config(composed([pretrained, f"model.id_embedding.snapshot_dir={tmp_path / 'snapshots'}"]))


def test_a_model_artifact_is_accepted_under_any_file_name(tmp_path) -> None:
    renamed = tmp_path / "best.pt"
    torch.save({"format": ARTIFACT_FORMAT, "info": {}}, renamed)
    assert resolve_checkpoint(str(renamed)) == renamed
    # another file of a run: the message says which file ebr-train writes, before any data work
    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(ValueError, match=r"expected a model\.pt file written by ebr-train"):
        resolve_checkpoint(str(tmp_path / "run.json"))
    # a damaged model.pt is named as such, not as a wrong name
    (tmp_path / "model.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="cannot be read as an ebr model artifact") as raised:
        resolve_checkpoint(str(tmp_path))
    assert "expected a model.pt" not in str(raised.value)


def test_the_tiny_world_pretraining_hint_suggests_overrides_that_work(tmp_path) -> None:
    failed = _python("ebr.pretrain", ["data=synthetic_tiny", f"hydra.run.dir={tmp_path / 'a'}"])
    assert failed.returncode == 1
    error = (tmp_path / "a" / ERROR_FILE).read_text().strip().splitlines()[-1]
    assert "use data.config.n_days=46 or split.train_days=5" in error, error
    assert "window_days" not in error, "no shorter window fits: the data ends before it would start"
    result = _python(
        "ebr.pretrain",
        ["data=synthetic_tiny", "split.train_days=5", "trainer.max_epochs=1", f"hydra.run.dir={tmp_path}/b"],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((tmp_path / "b" / "snapshots").iterdir())
