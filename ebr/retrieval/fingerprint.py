"""What a training read, as digests: the one definition the resume check and the model cache share.

A two-tower training reads the parts of its config that decide it, the seed, the number of ranks,
the data (its fingerprint, and the feature tables as the trainer receives them: signature level and
history features set), the fitted split's train and validation windows, and the negative pool its
random negatives are drawn from. `training_fingerprint` digests each of them: a resumable
checkpoint carries that fingerprint and resumes only a run whose every part is the same
(ebr.training.checkpoint.resume_from names the parts that differ); the model cache keys a stored
model by the digest of all of them (`fingerprint_key`). The serving corpus is not read: a job's
corpus policy changes what is served, not what is learnt (the pipeline hands the training
window's corpus as the negative pool whatever the policy).

Keys that only pace the run (checkpoint cadence, batch prefetch), change its console or name where
it writes (`NOT_TRAINING`) are left out, so they may differ.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ebr.data.schema import FeatureTable, InteractionData, Split
from ebr.retrieval.protocol import FitContext
from ebr.runs import world_size
from ebr.training.digest import TRAIN_PACE_KEYS, digest

# keys inside a config part that training does not read: serving's, the console's, where Lightning
# writes its logs (each job's own directory), and the model node's copies of top-level nodes
# (`${train}`, ...), which are parts of their own. The trainer config's callbacks stay in: one may
# change the training (early stopping), and a stale model or checkpoint is worse than a new training
NOT_TRAINING: dict[str, tuple[str, ...]] = {
    "model": ("training", "serving"),
    "trainer": ("enable_progress_bar", "enable_model_summary", "log_every_n_steps", "default_root_dir"),
    "train": TRAIN_PACE_KEYS,
}
# what every fingerprint digests besides the config parts, which may not take these names
INPUT_PARTS = (
    "seed",
    "world_size",
    "data",
    "users",
    "pins",
    "train_window",
    "val_window",
    "negative_pool",
)


def training_part(name: str, value: Any) -> Any:
    """A config part less the keys training does not read (`NOT_TRAINING`).

    Args:
        name: the part's name ("model", "train", "trainer", ...).
        value: its plain value.
    """
    skipped = NOT_TRAINING.get(name, ())
    if not isinstance(value, Mapping) or not skipped:
        return value
    return {key: child for key, child in value.items() if key not in skipped}


def training_fingerprint(
    config: Mapping[str, Any],
    data: InteractionData,
    split: Split,
    context: FitContext,
) -> dict[str, str]:
    """Each thing a training reads -> the digest of its value.

    Args:
        config: the config parts that decide the training, as plain values (the retriever's
            "train", "trainer", "network", "features", "id_embedding" and "negatives" for the resume
            check; the job config's training nodes for the model cache).
        data: the data as the trainer receives it.
        split: the fitted split (remapped, when the corpus remaps).
        context: the job's seed, negative pool and data fingerprint.

    Raises:
        ValueError: a config part named like one of `INPUT_PARTS`.
    """
    clashing = sorted(set(config) & set(INPUT_PARTS))
    if clashing:
        raise ValueError(f"training_fingerprint: config parts {clashing} clash with the digested inputs")
    parts = {name: digest(training_part(name, value)) for name, value in config.items()}
    return {
        **parts,
        "seed": digest(context.seed),
        # each rank's share of a batch, and the RNG states saved, depend on the ranks
        "world_size": digest(world_size()),
        "data": digest(context.artifact_info.get("data_fingerprint", data.source)),
        "users": _table_digest("users", data.users),
        "pins": _table_digest("pins", data.pins),
        "train_window": _frame_digest("train", split.train),
        "val_window": _frame_digest("val", split.val),
        "negative_pool": digest(np.ascontiguousarray(context.negatives, dtype=np.int64)),
    }


def fingerprint_key(fingerprint: Mapping[str, str]) -> str:
    """A 20-hex-digit key of a whole fingerprint (the model cache's directory name).

    Args:
        fingerprint: `training_fingerprint`'s digests.
    """
    text = json.dumps(dict(fingerprint), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _table_digest(name: str, table: FeatureTable) -> str:
    """The digest of a feature table's content: its rows and every feature's values."""
    hasher = hashlib.sha256(f"{name}|{table.n_rows}".encode())
    for feature_name in sorted(table.categorical):
        feature = table.categorical[feature_name]
        hasher.update(f"c|{feature_name}|{feature.cardinality}".encode())
        hasher.update(np.ascontiguousarray(feature.offsets).tobytes())
        hasher.update(np.ascontiguousarray(feature.values).tobytes())
        if feature.weights is not None:
            hasher.update(np.ascontiguousarray(feature.weights).tobytes())
    for feature_name in sorted(table.dense):
        hasher.update(f"d|{feature_name}".encode())
        hasher.update(np.ascontiguousarray(table.dense[feature_name]).tobytes())
    return hasher.hexdigest()[:16]


def _frame_digest(name: str, frame: pd.DataFrame) -> str:
    """The digest of an events frame's content: every row and column, in order."""
    hasher = hashlib.sha256(f"{name}|{len(frame)}|{','.join(map(str, frame.columns))}".encode())
    if len(frame):
        hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
        hasher.update(np.ascontiguousarray(hashed).tobytes())
    return hasher.hexdigest()[:16]
