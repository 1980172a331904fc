"""The conditional model end to end: `ebr.train` trains it and serves it per interest with the pre filter."""

from __future__ import annotations


def test_ebr_train_serves_a_conditional_model_per_interest_with_the_pre_filter(tmp_path) -> None:
    """The whole path through the command line: an early-fusion model trained, saved and served
    per followed interest with the pre filter; every retrieved pin then carries its query's
    interest, and the run's own artifact records the conditioning."""
    import json
    import os
    import subprocess
    import sys

    import torch

    run_dir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "ebr.train",
        "data=synthetic_tiny",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "logger=none",
        "model/conditioning=early_fusion",
        "serving.interest_filter=pre",
        "serving.n_interests=2",
        "serving.interest_metrics=true",
        f"hydra.run.dir={run_dir}",
    ]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["topic_match@100"] == 1.0
    assert 0.0 < metrics["recall@100"] <= 1.0
    assert metrics["cond/queries"] >= metrics["eval/users"]  # up to 2 interest queries per user
    network = torch.load(run_dir / "model.pt", weights_only=True)["model_config"]
    assert network["conditioning"]["mode"] == "early_fusion"
