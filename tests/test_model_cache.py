"""The model cache: one training per distinct training input, reused by serving-only arms of a sweep."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from ebr.retrieval.fingerprint import fingerprint_key, training_fingerprint
from ebr.retrieval.model_cache import ENTRY_FILE, ModelCache, training_config, training_key
from ebr.retrieval.protocol import FitContext
from ebr.runs import WALL_CLOCK_METRICS
from ebr.serving.signatures import remap_split
from ebr.training.setup import seeded_data_and_split
from tests.test_end_to_end import REPO
from tests.test_end_to_end import _run as run_train

QUICK = ["data=synthetic_tiny", "trainer.enable_progress_bar=false", "logger=none", "trainer.max_epochs=1"]


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def _untimed(metrics: dict) -> dict:
    return {key: value for key, value in metrics.items() if key not in WALL_CLOCK_METRICS}


@pytest.fixture(scope="module")
def cached_sweep(tmp_path_factory) -> Path:
    """Two corpus arms in one sweep sharing a cache: the second serves the first's model."""
    sweep = tmp_path_factory.mktemp("sweep")
    result = run_train(
        [
            "-m",
            *QUICK,
            "corpus=sum,time_decay",
            f"model_cache={sweep / 'models'}",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return sweep


def test_a_serving_only_arm_reuses_the_model_and_matches_its_own_training(cached_sweep, tmp_path) -> None:
    first, second = (json.loads((cached_sweep / job / "run.json").read_text())["info"] for job in ("0", "1"))
    assert "stored" in first["model_cache"]
    assert second["model_cache"]["reused"] == first["model_cache"]["stored"]
    assert second["model_cache"]["key"] == first["model_cache"]["key"]
    entries = [p for p in (cached_sweep / "models").iterdir() if (p / ENTRY_FILE).is_file()]
    assert len(entries) == 1, "one training for the two arms"
    # the reused arm's run directory holds the model it served and its loss curves
    assert (cached_sweep / "1" / "model.pt").read_bytes() == (cached_sweep / "0" / "model.pt").read_bytes()
    assert (cached_sweep / "1" / "history.json").is_file()
    # the same arm trained on its own, without the cache, gives the same metrics exactly
    alone = tmp_path / "alone"
    result = run_train([*QUICK, "corpus=time_decay", f"hydra.run.dir={alone}"], cwd=REPO)
    assert result.returncode == 0, result.stderr[-4000:]
    reused = _metrics(cached_sweep / "1")
    assert _untimed(reused) == _untimed(_metrics(alone))
    assert reused["final_train_loss"] == _metrics(cached_sweep / "0")["final_train_loss"]
    assert _metrics(cached_sweep / "1")["recall@100"] != _metrics(cached_sweep / "0")["recall@100"]


@pytest.fixture(scope="module")
def compose_tiny():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        yield lambda *overrides: compose(
            "train", overrides=["data=synthetic_tiny", "logger=none", *overrides]
        )
    GlobalHydra.instance().clear()


def _context(pool: np.ndarray, corpus: np.ndarray | None = None, seed: int = 0) -> FitContext:
    """A fit context drawing negatives from `pool`, serving `corpus` (default: the pool)."""
    return FitContext(
        corpus=pool if corpus is None else corpus, run_dir=Path("."), seed=seed, negative_pool=pool
    )


def test_the_key_follows_what_training_reads(compose_tiny) -> None:
    cfg = compose_tiny()
    data, split = seeded_data_and_split(cfg)
    pool = np.unique(split.train["pin"].to_numpy())
    key = training_key(cfg, data, split, _context(pool))
    # serving-only settings keep the key
    for serving in (["corpus=time_decay"], ["index=hnsw"], ["eval.ks=[10]"], ["serving.batch_size=7"]):
        assert training_key(compose_tiny(*serving), data, split, _context(pool)) == key, serving
    # anything the trainer reads changes it
    for training in (["train.dense_lr=0.5"], ["model.output_dim=32"], ["trainer.max_epochs=2"]):
        assert training_key(compose_tiny(*training), data, split, _context(pool)) != key, training
    assert training_key(cfg, data, split, _context(pool, seed=1)) != key, "the seed"
    assert training_key(cfg, data, split, _context(pool[1:])) != key, "the negative pool"
    # the serving corpus alone is not read by training: a smaller corpus, the same pool, the same key
    assert training_key(cfg, data, split, _context(pool, corpus=pool[::2])) == key, "the serving corpus"
    # remapped labels: every pin's label moves to the lowest id of its pair of pins
    representative = np.arange(data.pins.n_rows) // 2 * 2
    assert training_key(cfg, data, remap_split(split, representative), _context(pool)) != key


def test_the_resume_check_and_the_cache_read_one_fingerprint(compose_tiny) -> None:
    cfg = compose_tiny()
    data, split = seeded_data_and_split(cfg)
    pool = np.unique(split.train["pin"].to_numpy())
    settings = {"train": {"batch_size": 8}, "trainer": {"max_epochs": 1}}
    fingerprint = training_fingerprint(settings, data, split, _context(pool))
    assert training_fingerprint(settings, data, split, _context(pool, corpus=pool[::2])) == fingerprint
    differing = training_fingerprint(settings, data, split, _context(pool[1:]))
    assert [name for name in fingerprint if differing[name] != fingerprint[name]] == ["negative_pool"]
    # a checkpoint resumes whatever the pace or the console
    paced = {
        "train": {"batch_size": 8, "prefetch_batches": 2},
        "trainer": {"max_epochs": 1, "log_every_n_steps": 5},
    }
    assert training_fingerprint(paced, data, split, _context(pool)) == fingerprint
    # the cache's key is the digest of the same fingerprint over the job config's training nodes
    expected = fingerprint_key(training_fingerprint(training_config(cfg), data, split, _context(pool)))
    assert training_key(cfg, data, split, _context(pool)) == expected
    with pytest.raises(ValueError, match="clash"):
        training_fingerprint({"seed": 1}, data, split, _context(pool))


def test_an_entry_without_its_record_is_trained_again(compose_tiny, tmp_path) -> None:
    class Recorder:
        """A retriever that records what the cache asked of it."""

        def __init__(self) -> None:
            self.calls: list[str] = []

        def fit(self, data, split, context) -> None:
            self.calls.append("fit")
            (Path(context.run_dir) / "model.pt").write_bytes(b"weights")

        def load(self, artifact, data, split, training_metrics=None) -> None:
            self.calls.append(f"load {Path(artifact).read_bytes().decode()} {training_metrics}")

        def own_metrics(self) -> dict:
            return {"final_train_loss": 1.5}

    cfg = compose_tiny(f"model_cache={tmp_path / 'models'}")
    cache = ModelCache.of(cfg)
    assert cache is not None
    data, split = seeded_data_and_split(cfg)
    pool = np.unique(split.train["pin"].to_numpy())
    key = training_key(cfg, data, split, _context(pool))
    (tmp_path / "models" / key).mkdir(parents=True)  # a crash left the directory, not the record
    retriever = Recorder()
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        context = FitContext(corpus=pool, run_dir=tmp_path / name, negative_pool=pool)
        cache.fit_or_load(retriever, cfg, data, split, context)
    assert retriever.calls == ["fit", "load weights {'final_train_loss': 1.5}"]
    assert (tmp_path / "b" / "model.pt").read_bytes() == b"weights"


def test_the_cache_is_off_where_it_cannot_hold(compose_tiny, monkeypatch) -> None:
    assert ModelCache.of(compose_tiny()) is None
    assert ModelCache.of(compose_tiny("model_cache=/tmp/m", "model=popularity")) is None
    with pytest.raises(ValueError, match="model_cache=/tmp/m: pre-trained ID snapshots"):
        ModelCache.of(compose_tiny("model_cache=/tmp/m", "model/id_embedding=pretrained"))
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="multi-process"):
        ModelCache.of(compose_tiny("model_cache=/tmp/m"))
