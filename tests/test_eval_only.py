"""Evaluation-only mode and the corpus group end to end on the tiny world, through the command line."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import InstantiationException

from ebr.runs import WALL_CLOCK_METRICS
from tests.test_end_to_end import REPO
from tests.test_end_to_end import _run as run_train

QUICK = ["data=synthetic_tiny", "trainer.enable_progress_bar=false", "logger=none", "trainer.max_epochs=1"]
CORPUS = ["corpus=time_decay", "corpus.remap_image_signature=true", "eval.hit_level=signature"]
# what differs between a training run and an evaluation-only run of its model: timings and training
VARIABLE = ("train/", "final_")


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return run_train(args, cwd=REPO)


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def _stable(metrics: dict) -> dict:
    return {
        key: value
        for key, value in metrics.items()
        if not key.startswith(VARIABLE) and key not in WALL_CLOCK_METRICS
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("trained")
    result = _run([*QUICK, *CORPUS, f"hydra.run.dir={run_dir}"])
    assert result.returncode == 0, result.stderr[-4000:]
    return run_dir


def test_a_trained_run_reports_its_corpus(trained) -> None:
    metrics = _metrics(trained)
    assert metrics["corpus/size"] == metrics["eval/corpus_size"] == 80  # 10% of 800 pins
    assert metrics["corpus/duplicates_removed"] > 0
    assert 0 < metrics["corpus/recall_ceiling"] <= 1
    assert 0 <= metrics["corpus/new_pin_share"] < 1
    # the labels are the training-window corpus's: an 80-pin corpus cannot hit them all at 100
    assert metrics["recall@100"] < 1


def test_evaluation_only_reproduces_the_run_with_the_same_corpus(trained, tmp_path) -> None:
    result = _run(
        [*QUICK, *CORPUS, "eval_only=true", f"ckpt_path={trained / 'model.pt'}", f"hydra.run.dir={tmp_path}"]
    )
    assert result.returncode == 0, result.stderr[-4000:]
    again = _metrics(tmp_path)
    assert _stable(again) == _stable(_metrics(trained))
    assert not any(key.startswith("train/") for key in again), "nothing was trained"
    assert not (tmp_path / "model.pt").exists()
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["info"]["eval_only"]["ckpt_path"] == str(trained / "model.pt")
    # the run directory names the model as well as its file
    other = tmp_path / "other"
    result = _run(
        [
            *QUICK,
            *CORPUS[1:],
            "corpus=sum",
            "eval_only=true",
            f"ckpt_path={trained}",
            f"hydra.run.dir={other}",
        ]
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert _metrics(other)["corpus/size"] == 80
    assert _metrics(other)["recall@100"] != again["recall@100"], "another corpus, other metrics"
    # ... on the same labels: who is evaluated does not depend on the corpus policy
    for key in ("eval/users", "eval/cold_items", "eval/repeat_items"):
        assert _metrics(other)[key] == again[key], key


def test_a_renamed_copy_of_the_model_serves_like_its_model_pt(trained, tmp_path) -> None:
    copy = tmp_path / "kept" / "best.pt"  # a copy kept apart from its run: no run.json beside it
    copy.parent.mkdir()
    shutil.copyfile(trained / "model.pt", copy)
    run_dir = tmp_path / "run"
    result = _run([*QUICK, *CORPUS, "eval_only=true", f"ckpt_path={copy}", f"hydra.run.dir={run_dir}"])
    assert result.returncode == 0, result.stderr[-4000:]
    assert _stable(_metrics(run_dir)) == _stable(_metrics(trained))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ckpt_path={missing}"], "does not exist"),
        (["ckpt_path={trained}/run.json"], "expected a model.pt"),
        (["ckpt_path={trained}/model.pt", "data.config.trend_strength=0"], "trained on other data"),
        (
            ["ckpt_path={trained}/model.pt", "corpus.remap_image_signature=false"],
            "corpus.remap_image_signature",
        ),
    ],
)
def test_evaluation_only_refuses_a_wrong_checkpoint(trained, tmp_path, args, message) -> None:
    filled = [arg.format(missing=tmp_path / "nowhere" / "model.pt", trained=trained) for arg in args]
    result = _run([*QUICK, *CORPUS, "eval_only=true", *filled, f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.returncode != 0
    assert message in (tmp_path / "run" / "error.txt").read_text()
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_bad_corpus_settings_fail_before_the_data_and_write_no_metrics(tmp_path) -> None:
    sweep = tmp_path / "sweep"
    result = _run(
        ["-m", *QUICK, "corpus=time_decay", "corpus.half_life_days=0,-1", f"hydra.sweep.dir={sweep}"]
    )
    assert result.returncode == 1
    for job in ("0", "1"):
        assert "corpus.half_life_days must be positive" in (sweep / job / "error.txt").read_text()
        assert not (sweep / job / "metrics.json").exists()


@pytest.fixture
def composed():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        yield lambda overrides: compose("train", overrides=["data=synthetic_tiny", *overrides])
    GlobalHydra.instance().clear()


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["corpus=time_decay", "corpus.half_life_days=-1"], "corpus.half_life_days"),
        (["corpus.size=0"], "corpus.size"),
        (["corpus.size=-0.5"], "corpus.size"),
        (["corpus.scoring=popular"], "corpus.scoring"),
        (["eval.hit_level=cluster"], "eval.hit_level"),
        (["eval_only=true"], "ckpt_path"),
        (["ckpt_path=/tmp"], "eval_only"),
        (["eval_only=true", "ckpt_path=/nonexistent/model.pt"], "ckpt_path"),
        (["eval_only=true", "ckpt_path=x", "model=popularity"], "eval_only"),
    ],
)
def test_settings_checked_before_any_data_work(composed, monkeypatch, tmp_path, overrides, key) -> None:
    import ebr.pipeline as pipeline
    from ebr.runs import NoLoggers

    def no_data(cfg):
        raise AssertionError("the data was loaded before the setting was checked")

    monkeypatch.setattr(pipeline, "seeded_data_and_split", no_data)
    # the corpus policy's own errors come wrapped by hydra's instantiate, with their message
    with pytest.raises((ValueError, InstantiationException), match=key.replace(".", r"\.")):
        pipeline.run_job(composed(overrides), tmp_path, NoLoggers())


def test_a_budget_larger_than_the_pins_fails_before_training(composed, monkeypatch, tmp_path) -> None:
    import ebr.pipeline as pipeline
    from ebr.runs import NoLoggers

    monkeypatch.setattr(pipeline, "fit_windows", lambda *a, **k: pytest.fail("went past the budget check"))
    with pytest.raises(ValueError, match=r"corpus\.size=801 exceeds the data's 800 pins"):
        pipeline.run_job(composed(["corpus=sum", "corpus.size=801"]), tmp_path, NoLoggers())
