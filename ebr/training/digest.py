"""Digests of what a training read: torch-free, so that a baseline job's model cache and fingerprint
(ebr.retrieval.fingerprint) do not import torch or Lightning with the checkpoint code."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

# train keys that decide how a training is carried out, not what it computes: a resumed checkpoint
# and the model cache accept a run that differs in them
TRAIN_PACE_KEYS = ("checkpoint_every_n_steps", "prefetch_batches")


def digest(value: Any) -> str:
    """A short stable hash of JSON-able values, numpy arrays or bytes (for fingerprints).

    Args:
        value: what to hash.
    """
    hasher = hashlib.sha256()
    if isinstance(value, np.ndarray):
        hasher.update(str((value.dtype.str, value.shape)).encode())
        hasher.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, bytes):
        hasher.update(value)
    else:
        hasher.update(json.dumps(value, sort_keys=True, default=str).encode())
    return hasher.hexdigest()[:16]
