"""A data set's fingerprint: what a saved model records so that it is only served on its own data."""

from __future__ import annotations

import hashlib

import numpy as np

from ebr.data.schema import InteractionData

_COLUMNS = ("user", "pin", "timestamp", "event")


def data_fingerprint(data: InteractionData) -> str:
    """A 16-hex-digit hash of the data's name, table sizes and every event (user, pin, time, type).

    Two worlds generated from different configs (a knob, a seed) differ in their events, so their
    fingerprints differ even where their `source` strings would not say so (a real-data path).

    Args:
        data: the data set, as loaded (before any feature is derived from it).
    """
    digest = hashlib.sha256(f"{data.name}|{data.users.n_rows}|{data.pins.n_rows}".encode())
    for column in _COLUMNS:
        digest.update(np.ascontiguousarray(data.events[column].to_numpy(np.int64)).tobytes())
    return digest.hexdigest()[:16]
