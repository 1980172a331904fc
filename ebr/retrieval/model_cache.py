"""Train a two-tower model once and serve it in every job whose training would be the same.

A serving ablation (corpus policies, indexes, score terms) changes nothing the model learns from,
yet a sweep runs one job per arm. With `model_cache=DIR` a job first computes the key of its
training, a hash of everything the trainer reads (ebr.retrieval.fingerprint, the definition the
resume check uses too): the model's, training's, trainer's and features' config and the thread
count, the seed, the data's fingerprint, and the content of the fitted split, the feature tables and
the negative pool as this job hands them to the trainer. The first job with a key trains and stores its
`model.pt`, `history.json` and training metrics under `DIR/<key>/`; every later job with that key
serves the stored model (as `eval_only` does) and reports the stored training metrics. A setting
that changes the training, even one this module has never heard of, changes the key: a miss costs a
training, never a wrong reuse. Jobs of one key running at once wait on a file lock, so two parallel
sweep workers never train the same model twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from ebr.data.schema import InteractionData, Split
from ebr.retrieval.fingerprint import NOT_TRAINING, fingerprint_key, training_fingerprint
from ebr.retrieval.protocol import FitContext, Retriever, retriever_class
from ebr.runs import world_size
from ebr.runs.files import HISTORY_FILE, MODEL_FILE, publish_directory, write_json_atomic

ENTRY_FILE = "training.json"
# the config nodes the trainer reads (besides the data); everything else is serving or bookkeeping.
# The seed is one of the fingerprint's own inputs (the job's FitContext.seed).
TRAINING_NODES = ("model", "train", "trainer", "features", "num_threads")


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


def training_key(cfg: DictConfig, data: InteractionData, split: Split, context: FitContext) -> str:
    """A 20-hex-digit key of everything a two-tower training reads (ebr.retrieval.fingerprint).

    Args:
        cfg: the job config.
        data: the data as the trainer receives it (signature level and history features set).
        split: the fitted split (remapped, when the corpus remaps).
        context: the job's fit context (its seed, negative pool and data fingerprint).
    """
    return fingerprint_key(training_fingerprint(training_config(cfg), data, split, context))


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
        """The job's cache, or None when `model_cache` is unset or the job does not train a model
        it could load again here (a model that saves none, or `eval_only=true`, which names its
        model itself).

        Args:
            cfg: the job config.

        Raises:
            ValueError: naming `model_cache`, for a multi-process job or pre-trained ID snapshots
                (whose tables are read from disk, outside the key).
        """
        root = OmegaConf.select(cfg, "model_cache", default=None)
        if not root or OmegaConf.select(cfg, "eval_only", default=False):
            return None
        if not retriever_class(cfg.model).loadable:
            return None
        if world_size() > 1:
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
        retriever: Retriever,
        cfg: DictConfig,
        data: InteractionData,
        split: Split,
        context: FitContext,
    ) -> dict[str, Any]:
        """Serve the model stored under this job's key, or train it and store it; return what
        run.json records (the key, and whether the model was stored or reused, from where).

        Args:
            retriever: the job's retriever (a `loadable` one).
            cfg: the job config.
            data: the data as the trainer receives it.
            split: the fitted split.
            context: the job's fit context (its negative pool is part of the key; its run
                directory receives the model either way).
        """
        key = training_key(cfg, data, split, context)
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
            record = {
                "metrics": retriever.own_metrics(),
                "trained_in": str(run_dir),
                "seed": context.seed,
                "config": training_config(cfg),
            }

            def fill(staging: Path) -> None:
                for name in (MODEL_FILE, HISTORY_FILE):
                    if (run_dir / name).is_file():
                        _link_or_copy(run_dir / name, staging / name)
                # the record marks the entry complete: written last, inside a directory renamed whole
                write_json_atomic(staging / ENTRY_FILE, record)

            publish_directory(entry, fill)  # replaces a directory without its record (incomplete)
            return {"key": key, "stored": str(entry)}
