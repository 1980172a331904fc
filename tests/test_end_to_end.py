"""`ebr-train` end to end on the tiny world, through the real command line."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from jobs import REPO, run_module

QUICK = ["data=synthetic_tiny", "trainer.enable_progress_bar=false"]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return run_module("ebr.train", args, cwd=cwd)


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
    assert b"data=synthetic_tiny" in record, "the wandb job type is the run's arm"
    run = json.loads((tiny_run / "run.json").read_text())
    assert run["info"]["data_source"].startswith("synthetic:")
    assert run["arm"] == "data=synthetic_tiny"  # trainer.enable_progress_bar is not an arm


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


def test_sweep_records_failures_resumes_and_refuses_a_changed_config(tmp_path):
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        *QUICK,
        "logger=none",
        "trainer.max_epochs=1",
        "train.loss.temperature=0.05,-1",
        f"hydra.sweep.dir={sweep}",
    ]
    first = _run(args, cwd=REPO)
    assert first.returncode == 1, "a sweep with a failed job exits non-zero"
    assert "sweep: 1 finished, 1 failed" in first.stdout + first.stderr
    good, bad = sweep / "0", sweep / "1"
    assert (good / "metrics.json").is_file()
    assert not (good / "error.txt").exists()
    assert (bad / "error.txt").is_file()
    assert not (bad / "metrics.json").exists()
    assert "temperature" in (bad / "error.txt").read_text()
    finished_at = (good / "metrics.json").stat().st_mtime_ns
    second = _run(args, cwd=REPO)
    assert second.returncode == 1
    assert (good / "metrics.json").stat().st_mtime_ns == finished_at, "a finished job must be skipped"
    assert "already holds the results of this config" in second.stdout + second.stderr
    assert "sweep: 1 skipped, 1 failed" in second.stdout + second.stderr
    assert (bad / "error.txt").is_file()  # the failed job was retried and failed again

    # the same sweep with another setting: the finished job is refused, not silently kept
    config_before = (good / ".hydra" / "config.yaml").read_text()
    changed = _run([*args, "train.dense_lr=0.5"], cwd=REPO)
    output = changed.stdout + changed.stderr
    assert changed.returncode == 1
    assert "train.dense_lr: 0.001 -> 0.5" in output
    assert "1 refused" in output
    assert (good / "metrics.json").stat().st_mtime_ns == finished_at
    assert (good / ".hydra" / "config.yaml").read_text() == config_before, "old results keep their config"
    assert "dense_lr: 0.001" in config_before


def test_single_run_failure_exits_nonzero_and_leaves_no_metrics(tmp_path):
    result = _run([*QUICK, "logger=none", "train.loss.temperature=-1", f"hydra.run.dir={tmp_path}"], cwd=REPO)
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
    """The service with the popularity prior ranks by cosine + w * log(1 + train engagements)."""
    import hydra
    from hydra import compose, initialize_config_dir

    from ebr.data.batching import FeatureGatherer
    from ebr.evaluation.metrics import retrieval_metrics
    from ebr.evaluation.task import build_eval_task
    from ebr.models.artifact import load_artifact
    from ebr.serving.corpus import training_window_corpus
    from ebr.serving.embed import embed_rows, tower_encoder
    from ebr.serving.score_terms import PopularityPrior, ScoreColumns, TrainingEngagements
    from ebr.serving.service import RetrievalService

    weight = 0.2
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = compose("train", overrides=["data=synthetic_tiny"])
    data = hydra.utils.instantiate(cfg.data)
    split = hydra.utils.instantiate(cfg.split)(data)
    task = build_eval_task(split, training_window_corpus(split))
    engagements = TrainingEngagements.from_split(split)
    log_counts = np.log1p(engagements.counts(task.corpus))
    columns = ScoreColumns.build([PopularityPrior(weight)], engagements, task.corpus)
    index = hydra.utils.instantiate(cfg.index)
    service = RetrievalService.from_artifact(tiny_run / "model.pt", data, task.corpus, index, columns)
    served = retrieval_metrics(
        service.search(service.user_vectors(task.user_ids), 100, task.exclude), task.relevant, (10, 100)
    )

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
