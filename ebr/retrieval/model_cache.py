"""Train a two-tower model once and serve it in every job whose training would be the same.

A serving ablation (corpus policies, indexes, score terms) changes nothing the model learns from,
yet a sweep runs one job per arm. With `model_cache=DIR` a job first computes the key of its
training, a hash of everything the trainer reads: the model's, training's, trainer's and features'
config, the seed and thread count, and the content of the fitted split, the feature tables and the
negative pool as this job hands them to the trainer. The first job with a key trains and stores its
`model.pt`, `history.json` and training metrics under `DIR/<key>/`; every later job with that key
serves the stored model (as `eval_only` does) and reports the stored training metrics. A setting
that changes the training, even one this module has never heard of, changes the key: a miss costs a
training, never a wrong reuse. Jobs of one key running at once wait on a file lock, so two parallel
sweep workers never train the same model twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, ListConfig, OmegaConf

from ebr.data.schema import FeatureTable, InteractionData, Split
from ebr.retrieval.protocol import FitContext
from ebr.runs.files import write_json_atomic
from ebr.training.checkpoint import TRAIN_PACE_KEYS

MODEL_FILE = "model.pt"
HISTORY_FILE = "history.json"
ENTRY_FILE = "training.json"
# the config nodes the trainer reads (besides the data); everything else is serving or bookkeeping
TRAINING_NODES = ("model", "train", "trainer", "features", "seed", "num_threads")
# keys inside those nodes that training does not read: serving's, the console's, where Lightning
# writes its logs (each job's own directory), and the model node's copies of top-level nodes
# (`training: {train: ${train}, ...}`, `serving: {...}`), which are keyed as top-level nodes already
NOT_TRAINING = {
    "model": ("training", "serving"),
    "trainer": ("enable_progress_bar", "default_root_dir"),
    "train": TRAIN_PACE_KEYS,
}


def training_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config nodes that decide the training, less the keys training does not read.

    Args:
        cfg: the job config.
    """
    config: dict[str, Any] = {}
    for node in TRAINING_NODES:
        value = OmegaConf.select(cfg, node, default=None)
        if isinstance(value, DictConfig):
            skipped = NOT_TRAINING.get(node, ())
            # resolved key by key: a skipped key may name what only a running job resolves
            value = {
                key: OmegaConf.to_container(child, resolve=True)
                if isinstance(child := value[key], DictConfig | ListConfig)
                else child
                for key in value
                if key not in skipped
            }
        config[node] = value
    return config


def _update_table(digest: Any, name: str, table: FeatureTable) -> None:
    digest.update(f"{name}|{table.n_rows}".encode())
    for feature_name in sorted(table.categorical):
        feature = table.categorical[feature_name]
        digest.update(f"c|{feature_name}|{feature.cardinality}".encode())
        digest.update(np.ascontiguousarray(feature.offsets).tobytes())
        digest.update(np.ascontiguousarray(feature.values).tobytes())
        if feature.weights is not None:
            digest.update(np.ascontiguousarray(feature.weights).tobytes())
    for feature_name in sorted(table.dense):
        digest.update(f"d|{feature_name}".encode())
        digest.update(np.ascontiguousarray(table.dense[feature_name]).tobytes())


def _update_frame(digest: Any, name: str, frame: pd.DataFrame) -> None:
    digest.update(f"{name}|{len(frame)}|{','.join(map(str, frame.columns))}".encode())
    if len(frame):
        hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
        digest.update(np.ascontiguousarray(hashed).tobytes())


def training_key(cfg: DictConfig, data: InteractionData, split: Split, negative_pool: np.ndarray) -> str:
    """A 20-hex-digit key of everything a two-tower training reads.

    Args:
        cfg: the job config.
        data: the data as the trainer receives it (signature level and history features set).
        split: the fitted split (remapped, when the corpus remaps).
        negative_pool: the pins random negatives are drawn from.
    """
    digest = hashlib.sha256(json.dumps(training_config(cfg), sort_keys=True, default=str).encode())
    _update_table(digest, "users", data.users)
    _update_table(digest, "pins", data.pins)
    for window in ("train", "val"):
        _update_frame(digest, window, getattr(split, window))
    digest.update(np.ascontiguousarray(negative_pool, dtype=np.int64).tobytes())
    return digest.hexdigest()[:20]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing) for the block."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link where the file system allows one (the model is not copied), else a copy."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


@dataclass(frozen=True)
class ModelCache:
    """Where trained models are kept for jobs that would train them again.

    Args:
        root: the cache directory (`model_cache`).
    """

    root: Path

    @classmethod
    def of(cls, cfg: DictConfig) -> ModelCache | None:
        """The job's cache, or None when `model_cache` is unset or the job does not train a
        two-tower model here (another model, or `eval_only=true`, which names its model itself).

        Args:
            cfg: the job config.

        Raises:
            ValueError: naming `model_cache`, for a multi-process job or pre-trained ID snapshots
                (whose tables are read from disk, outside the key).
        """
        root = OmegaConf.select(cfg, "model_cache", default=None)
        if not root or OmegaConf.select(cfg, "eval_only", default=False):
            return None
        if not str(OmegaConf.select(cfg, "model._target_", default="")).endswith("TwoTowerRetriever"):
            return None
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ValueError(
                f"model_cache={root}: a multi-process job trains without the model cache; unset it"
            )
        if OmegaConf.select(cfg, "model.id_embedding.mode", default="scratch") == "pretrained":
            raise ValueError(
                f"model_cache={root}: pre-trained ID snapshots are read from disk, outside the cache's key;"
                " unset model_cache with model/id_embedding=pretrained"
            )
        return cls(Path(root).expanduser())

    def fit_or_load(
        self,
        retriever: Any,
        cfg: DictConfig,
        data: InteractionData,
        split: Split,
        context: FitContext,
    ) -> dict[str, Any]:
        """Serve the model stored under this job's key, or train it and store it; return what
        run.json records (the key, and whether the model was stored or reused, from where).

        Args:
            retriever: the two-tower retriever (`fit`, `load`, `own_metrics`).
            cfg: the job config.
            data: the data as the trainer receives it.
            split: the fitted split.
            context: the job's fit context (its negative pool is part of the key; its run
                directory receives the model either way).
        """
        key = training_key(cfg, data, split, context.negatives)
        self.root.mkdir(parents=True, exist_ok=True)
        entry = self.root / key
        run_dir = Path(context.run_dir)
        with _locked(self.root / f".{key}.lock"):
            if (entry / ENTRY_FILE).is_file():
                record = json.loads((entry / ENTRY_FILE).read_text())
                retriever.load(entry / MODEL_FILE, data, split, training_metrics=record["metrics"])
                for name in (MODEL_FILE, HISTORY_FILE):
                    if (entry / name).is_file():
                        _link_or_copy(entry / name, run_dir / name)
                return {"key": key, "reused": str(entry), "trained_in": record["trained_in"]}
            retriever.fit(data, split, context)
            shutil.rmtree(entry, ignore_errors=True)  # a directory without its record is incomplete
            staging = self.root / f".tmp-{key}-{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            for name in (MODEL_FILE, HISTORY_FILE):
                if (run_dir / name).is_file():
                    _link_or_copy(run_dir / name, staging / name)
            record = {
                "metrics": retriever.own_metrics(),
                "trained_in": str(run_dir),
                "seed": context.seed,
                "config": training_config(cfg),
            }
            # the record marks the entry complete: written last, inside a directory renamed whole
            write_json_atomic(staging / ENTRY_FILE, record)
            os.replace(staging, entry)
            return {"key": key, "stored": str(entry)}
