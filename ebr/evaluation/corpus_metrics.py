"""What a serving corpus allows before any ranker runs: `corpus/recall_ceiling`, `corpus/new_pin_share`.

Both count the evaluated window's distinct (user, pin) engagement pairs, as the offline task does.
"""

from __future__ import annotations

import numpy as np

from ebr.data.csr import Csr
from ebr.data.schema import InteractionData, Split, engaged_pairs
from ebr.evaluation.task import WINDOWS, _unique_pairs

# the creation time of a pin that never appears in the events: never created
NEVER = np.iinfo(np.int64).max


def recall_ceiling(
    split: Split,
    corpus: np.ndarray,
    window: str = "test",
    exclude_train: bool = True,
    label_of: np.ndarray | None = None,
) -> float:
    """Share of the window's engagement pairs whose pin (or, with `label_of`, its label) is in the
    corpus: what no ranker over it can exceed in recall. With `exclude_train`, pairs the user already
    engaged in train are left out (they are never retrievable). NaN when no pair remains.

    Args:
        split: the evaluated split (labels remapped, when the corpus remaps them).
        corpus: sorted corpus pin ids.
        window: "test" or "val".
        exclude_train: as `eval.exclude_train`.
        label_of: (n_pins,) pin -> label (`eval.hit_level=signature`); None: per pin.
    """
    users, pins = _window_pairs(split, window)
    items = corpus if label_of is None else np.unique(label_of[corpus])
    keys = pins if label_of is None else label_of[pins]
    users, keys = _unique_pairs(users, keys)
    if exclude_train:
        train_users, train_pins = split.train_engaged
        train_keys = train_pins if label_of is None else label_of[train_pins]
        width = int(max(keys.max(initial=0), train_keys.max(initial=0))) + 1
        fresh = ~np.isin(users * width + keys, train_users * width + train_keys)
        users, keys = users[fresh], keys[fresh]
    if len(keys) == 0:
        return float("nan")
    return float(np.isin(keys, items).mean())


def share_in_corpus(relevant: Csr, items: np.ndarray) -> float:
    """Share of the relevant (user, item) pairs whose item is in `items` (NaN without pairs).

    Args:
        relevant: per user, relevant ids (pins, or labels such as signatures).
        items: the ids the corpus holds, in the same id space.
    """
    if len(relevant.values) == 0:
        return float("nan")
    return float(np.isin(relevant.values, items).mean())


def new_pin_share(split: Split, created_at: np.ndarray, serving_time: int, window: str = "test") -> float:
    """Share of the window's engagement pairs on pins created after `serving_time`.

    Args:
        split: the evaluated split, labels as engaged (not remapped: a remapped label names its
            representative, whose creation time is not the engaged pin's).
        created_at: (n_pins,) creation time of each pin in seconds (`creation_times`).
        serving_time: when the corpus was built.
        window: "test" or "val".
    """
    _, pins = _unique_pairs(*_window_pairs(split, window))
    if len(pins) == 0:
        return float("nan")
    return float(np.mean(np.asarray(created_at)[pins] > serving_time))


def creation_times(data: InteractionData) -> np.ndarray:
    """(n_pins,) int64 creation time of each pin: `pins.meta["created_at"]` when the data has it (the
    synthetic world), else the pin's first event of any kind in the whole log (MovieLens: a movie's
    first rating, the earliest time it is known to exist); NEVER for a pin without events.

    Args:
        data: the data set.
    """
    if "created_at" in data.pins.meta:
        return np.asarray(data.pins.meta["created_at"], dtype=np.int64)
    created = np.full(data.pins.n_rows, NEVER, dtype=np.int64)
    events = data.events
    np.minimum.at(created, events["pin"].to_numpy(np.int64), events["timestamp"].to_numpy(np.int64))
    return created


def _window_pairs(split: Split, window: str) -> tuple[np.ndarray, np.ndarray]:
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {WINDOWS}, got {window!r}")
    return engaged_pairs(split.test if window == "test" else split.val, f"split.{window}")
