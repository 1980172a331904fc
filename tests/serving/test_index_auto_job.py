"""`ebr-train index=auto` on the tiny world: the choice is made on validation users, recorded, served."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from jobs import run_module

# the tiny world, one epoch, and an auto index measured on every corpus (min_corpus=0)
AUTO_JOB = (
    *("data=synthetic_tiny", "trainer.max_epochs=1", "logger=none", "trainer.enable_progress_bar=false"),
    *("index=auto", "index.min_corpus=0", "index.sample_users=150", "eval.simulation.users=200"),
)


def _train(args: list[str]) -> subprocess.CompletedProcess:
    """`python -m ebr.train ARGS` from the repository, finished without error."""
    result = run_module("ebr.train", args)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def test_an_auto_index_job_records_its_choice_and_operating_points(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = [*AUTO_JOB, f"hydra.run.dir={run_dir}"]
    _train(args)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    choice = json.loads((run_dir / "run.json").read_text())["info"]["index_choice"]
    points = choice["operating_points"]
    # flat, then 5 + 5 + 4 settings of conf/index/auto.yaml's three candidates
    assert len(points) == 15
    assert points[0]["factory"] == "Flat"
    assert choice["sample_queries"] == 150
    chosen = points[choice["chosen"]]
    assert metrics["serving/index_choice"] == choice["chosen"]
    assert metrics["serving/index_choice_ann_recall@100"] == pytest.approx(chosen["ann_recall@100"])
    meeting = [p for p in points if p["ann_recall@100"] >= 0.95]
    assert chosen["queries_per_second"] == max(p["queries_per_second"] for p in meeting)
    # the test evaluation's own recall check runs on the chosen index: exact when it is flat
    assert 0.0 < metrics["ann_recall@100"] <= 1.0
    if choice["chosen"] == 0:
        assert metrics["ann_recall@100"] == 1.0
    # an approximate choice is timed against flat side by side on the test users' queries
    assert ("serving/side_by_side_vs_flat" in metrics) == (choice["chosen"] != 0)


def test_interest_serving_chooses_the_auto_index_once_per_corpus(tmp_path: Path) -> None:
    """A conditional model served per interest with index=auto: the evaluation and the simulated
    population search one corpus, so the candidates are measured once, not once per task."""
    run_dir = tmp_path / "run"
    args = [
        *AUTO_JOB,
        *("model/conditioning=early_fusion", "serving.interest_filter=pre", "serving.n_interests=2"),
        # the stage line is at DEBUG when it is quick
        "hydra.verbose=ebr",
        f"hydra.run.dir={run_dir}",
    ]
    result = _train(args)
    output = result.stdout + result.stderr
    assert output.count("serving: index=auto measured") == 1, output[-4000:]
    assert "sim/repins" in " ".join(json.loads((run_dir / "metrics.json").read_text()))
