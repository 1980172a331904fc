"""What decides a two-tower training, as digests: the fingerprint a resumable checkpoint carries.

A checkpoint resumes only a run whose every part is the same; the parts that only pace the run
(checkpoint cadence, batch prefetch) or change its console are left out, so they may differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch.distributed as dist

from ebr.data.schema import InteractionData, Split
from ebr.retrieval.protocol import FitContext
from ebr.training.checkpoint import TRAIN_PACE_KEYS, digest

# trainer keys that change the console or the logs, not what is trained: a resumed run may differ
CONSOLE_TRAINER_KEYS = ("enable_progress_bar", "enable_model_summary", "log_every_n_steps", "callbacks")


def training_fingerprint(
    settings: Mapping[str, Mapping[str, Any]],
    data: InteractionData,
    split: Split,
    context: FitContext,
) -> dict[str, str]:
    """Each part of a training's setup -> the digest of its value.

    Args:
        settings: plain dicts of the parts read from the config: "train", "trainer", "network",
            "features", "id_embedding" and "negatives".
        data: the data set.
        split: its fitted split (the windows' engagements are digested).
        context: the job's seed, negative pool and data fingerprint.
    """
    train = {k: v for k, v in settings["train"].items() if k not in TRAIN_PACE_KEYS}
    trainer = {k: v for k, v in settings["trainer"].items() if k not in CONSOLE_TRAINER_KEYS}
    windows = {
        name: digest(np.concatenate([frame["user"].to_numpy(np.int64), frame["pin"].to_numpy(np.int64)]))
        for name, frame in (("train_window", split.train), ("val_window", split.val))
    }
    return {
        "seed": digest(context.seed),
        # each rank's share of a batch, and the RNG states saved, depend on the ranks
        "world_size": digest(dist.get_world_size() if dist.is_initialized() else 1),
        "network": digest(settings["network"]),
        "features": digest(settings["features"]),
        "train": digest(train),
        "trainer": digest(trainer),
        "id_embedding": digest(settings["id_embedding"]),
        "negatives": digest(settings["negatives"]),
        "data": digest(context.artifact_info.get("data_fingerprint", data.source)),
        "negative_pool": digest(np.asarray(context.corpus, dtype=np.int64)),
        **windows,
    }
