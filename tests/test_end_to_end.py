"""`ebr-train` end to end on the tiny world, through the real command line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
TRAIN = [sys.executable, "-m", "ebr.train"]
QUICK = ["data=synthetic_tiny", "trainer.enable_progress_bar=false"]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", PYTHONWARNINGS="ignore")
    return subprocess.run([*TRAIN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("run")
    result = _run([*QUICK, f"hydra.run.dir={run_dir}"], cwd=REPO)
    assert result.returncode == 0, result.stderr[-4000:]
    return run_dir


def test_model_beats_popularity_on_recall(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    for k in (10, 50, 100):
        for name in ("recall", "ndcg", "hr"):
            assert 0.0 <= metrics[f"{name}@{k}"] <= 1.0
            assert f"popularity/{name}@{k}" in metrics
    assert metrics["ann_recall@100"] == pytest.approx(1.0)  # flat index: exact by construction
    for key in ("sim/engaged_sessions", "sim/repins", "sim/clicks"):
        assert metrics[key] >= 0
    assert metrics["recall@100"] > metrics["popularity/recall@100"], metrics


def test_run_directory_holds_config_model_and_offline_wandb(tiny_run):
    assert (tiny_run / ".hydra" / "config.yaml").is_file()
    assert (tiny_run / ".hydra" / "overrides.yaml").is_file()
    assert (tiny_run / "model.pt").is_file()
    runs = list((tiny_run / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, "the default logger is an offline wandb run inside the run directory"
    # offline runs keep config, history and summary in the run's .wandb log (protobuf records)
    record = next(runs[0].glob("run-*.wandb")).read_bytes()
    for expected in (b"experiment_name", b"crossing", b"train/loss", b"recall@100", b'"group":"default"'):
        assert expected in record, expected


def test_serving_from_the_saved_model_alone(tiny_run):
    """The artifact rebuilds the towers without the trainer; embeddings are unit vectors."""
    from ebr.data.batching import FeatureGatherer
    from ebr.data.world import WorldConfig, generate_world
    from ebr.models.artifact import load_artifact
    from ebr.serving.embed import embed_rows, tower_encoder

    model, payload = load_artifact(tiny_run / "model.pt")
    assert "ebr.training" not in " ".join(type(m).__module__ for m in model.modules())
    data = generate_world(WorldConfig(n_users=1500, n_pins=800, n_interests=12, n_days=30))
    features = payload["features"]
    pins = embed_rows(
        tower_encoder(model.pin_tower),
        FeatureGatherer(data.pins, features["pin_sparse"], features["pin_dense"]),
        np.arange(20),
    )
    assert pins.shape == (20, model.output_dim)
    np.testing.assert_allclose(np.linalg.norm(pins, axis=1), 1.0, rtol=1e-5)


def test_sweep_records_failures_and_resumes(tmp_path):
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        *QUICK,
        "logger=none",
        "trainer.max_epochs=1",
        "train.temperature=0.05,-1",
        f"hydra.sweep.dir={sweep}",
    ]
    first = _run(args, cwd=REPO)
    assert first.returncode == 0, first.stderr[-4000:]
    good, bad = sweep / "0", sweep / "1"
    assert (good / "metrics.json").is_file()
    assert not (good / "error.txt").exists()
    assert (bad / "error.txt").is_file()
    assert not (bad / "metrics.json").exists()
    assert "temperature" in (bad / "error.txt").read_text()
    finished_at = (good / "metrics.json").stat().st_mtime_ns
    second = _run(args, cwd=REPO)
    assert second.returncode == 0
    assert (good / "metrics.json").stat().st_mtime_ns == finished_at, "a finished job must be skipped"
    assert "already holds metrics.json" in second.stdout + second.stderr
    assert (bad / "error.txt").is_file()  # the failed job was retried and failed again


def test_single_run_failure_exits_nonzero_and_leaves_no_metrics(tmp_path):
    result = _run([*QUICK, "logger=none", "train.temperature=-1", f"hydra.run.dir={tmp_path}"], cwd=REPO)
    assert result.returncode != 0
    assert (tmp_path / "error.txt").is_file()
    assert not (tmp_path / "metrics.json").exists()


def test_parallel_joblib_sweep_with_independent_process_groups(tmp_path):
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        *QUICK,
        "logger=csv",
        "trainer.max_epochs=1",
        "seed=0,1",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={sweep}",
    ]
    result = _run(args, cwd=REPO)
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = [json.loads((sweep / str(i) / "metrics.json").read_text()) for i in (0, 1)]
    assert metrics[0]["recall@100"] != metrics[1]["recall@100"], "seeds 0 and 1 must train differently"
    assert (sweep / "0" / "csv" / "metrics.csv").is_file()


def test_bad_key_fails_before_any_work(tmp_path):
    result = _run([*QUICK, "train.batch_sise=5", f"hydra.run.dir={tmp_path}"], cwd=REPO)
    assert result.returncode != 0
    assert "batch_sise" in result.stderr
    assert not (tmp_path / ".hydra").exists()
    assert not (tmp_path / "metrics.json").exists()


def test_served_popularity_prior_matches_brute_force(tiny_run):
    """evaluate_artifact with index.popularity_prior ranks by cosine + w * log(1 + train engagements)."""
    import hydra
    from hydra import compose, initialize_config_dir

    from ebr.data.batching import FeatureGatherer
    from ebr.evaluation.metrics import retrieval_metrics
    from ebr.evaluation.task import build_eval_task
    from ebr.models.artifact import load_artifact
    from ebr.pipeline import evaluate_artifact
    from ebr.serving.corpus import training_window_corpus
    from ebr.serving.embed import embed_rows, tower_encoder
    from ebr.serving.popularity_prior import pin_log_engagements
    from ebr.train import main as _registers_the_config_schema  # noqa: F401

    weight = 0.2
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = compose("train", overrides=["data=synthetic_tiny", f"+index.popularity_prior={weight}"])
    data = hydra.utils.instantiate(cfg.data)
    split = hydra.utils.instantiate(cfg.split)(data)
    task = build_eval_task(split, training_window_corpus(split))
    log_counts = pin_log_engagements(split, task.corpus)
    served = evaluate_artifact(tiny_run / "model.pt", data, task, cfg, split)

    model, payload = load_artifact(tiny_run / "model.pt")
    features = payload["features"]
    pins = embed_rows(
        tower_encoder(model.pin_tower),
        FeatureGatherer(data.pins, features["pin_sparse"], features["pin_dense"]),
        task.corpus,
    )
    users = embed_rows(
        tower_encoder(model.user_tower),
        FeatureGatherer(data.users, features["user_sparse"], features["user_dense"]),
        task.user_ids,
    )

    def brute_force(prior_weight: float) -> dict[str, float]:
        scores = users.astype(np.float64) @ pins.T.astype(np.float64) + prior_weight * log_counts[None, :]
        rows = task.exclude.row_of_value()
        scores[rows, np.searchsorted(task.corpus, task.exclude.values)] = -np.inf
        ranked = task.corpus[np.argsort(-scores, axis=1, kind="stable")[:, :100]]
        return retrieval_metrics(ranked, task.relevant, (10, 100))

    expected, without_prior = brute_force(weight), brute_force(0.0)
    # the prior must change the ranking, or this test could not tell it was applied
    assert abs(without_prior["ndcg@10"] - expected["ndcg@10"]) > 0.01
    assert served["recall@100"] == pytest.approx(expected["recall@100"], abs=2e-3)
    assert served["ndcg@10"] == pytest.approx(expected["ndcg@10"], abs=2e-3)
    with pytest.raises(ValueError, match="popularity_prior > 0 needs"):
        evaluate_artifact(tiny_run / "model.pt", data, task, cfg)
