"""Image signatures: de-duplication levels and the remapping of fine to coarse signatures.

The synthetic world gives every pin a fine signature (unique per pin) and a coarse one (shared by
a near-duplicate cluster) in `pins.meta`. With `corpus.remap_image_signature=true` the coarse one
is used everywhere: the corpus keeps one pin per coarse signature, the pins' `image_signature`
feature is the coarse signature, and every label (training positive, evaluation relevance,
exclusion) on a pin moves to its signature's representative. With `false` the fine signature is
used, as the old system did (de-duplication at that level removes nothing in the world). With
None the data is left as loaded (the world's `image_signature` feature is the coarse one).
Data without signatures (MovieLens) treats each pin as its own signature; remapping is refused.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from ebr.data.schema import CategoricalFeature, DataValidationError, FeatureTable, InteractionData, Split

COARSE, FINE = "coarse_signature", "fine_signature"
FEATURE = "image_signature"
WINDOWS = ("pretrain", "train", "val", "test")


def signature_level(remap: bool | None) -> str:
    """The meta column a corpus de-duplicates by: coarse with remapping, fine otherwise.

    Args:
        remap: `corpus.remap_image_signature`.
    """
    return COARSE if remap else FINE


def pin_signatures(pins: FeatureTable, level: str, key: str = "corpus.remap_image_signature") -> np.ndarray:
    """(n_pins,) int64 signature of each pin at `level`.

    Without the column, fine signatures are the pins themselves (so de-duplication is a no-op),
    and coarse ones are refused.

    Args:
        pins: the pin table.
        level: COARSE or FINE.
        key: the config key named when coarse signatures are missing.
    """
    if level in pins.meta:
        return np.asarray(pins.meta[level], dtype=np.int64)
    if level == FINE:
        return np.arange(pins.n_rows, dtype=np.int64)
    raise DataValidationError(
        f"{key}: the data has no image signatures (pins.meta lacks '{COARSE}'), so there is nothing to"
        " remap or count hits by; use a data set with signatures or leave the key at its default"
    )


def best_members(signature: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per signature id, the member pin of highest score (ties: lowest pin id); -1 for unused ids.

    Args:
        signature: (n_pins,) non-negative signature ids.
        scores: (n_pins,) pin scores.
    """
    pins = np.arange(len(signature), dtype=np.int64)
    order = np.lexsort((pins, -np.asarray(scores, dtype=np.float64), signature))
    first = np.r_[True, signature[order][1:] != signature[order][:-1]]
    best = np.full(int(signature.max()) + 1 if len(signature) else 0, -1, dtype=np.int64)
    best[signature[order][first]] = order[first]
    return best


def freshest_members(signature: np.ndarray, created_at: np.ndarray, serving_time: int) -> np.ndarray:
    """Per pin, the latest-created member of its signature that exists at `serving_time` (ties:
    highest id); a signature with no live member falls back to its latest-created member.

    Args:
        signature: (n_pins,) signature ids.
        created_at: (n_pins,) creation times in seconds.
        serving_time: seconds.
    """
    pins = np.arange(len(signature))
    alive = created_at <= serving_time
    order = np.lexsort((pins, np.where(alive, created_at, np.iinfo(np.int64).min), signature))
    last = np.r_[signature[order][1:] != signature[order][:-1], True]
    best = np.empty(signature.max() + 1, dtype=np.int64)
    best[signature[order][last]] = order[last]
    return best[signature]


def remap_split(split: Split, representative: np.ndarray) -> Split:
    """The split with every event's pin replaced by its representative (the labels remapped).

    Args:
        split: the split.
        representative: (n_pins,) pin -> the pin that carries its labels.
    """

    def remapped(frame: pd.DataFrame) -> pd.DataFrame:
        if frame.empty:
            return frame
        out = frame.copy()
        out["pin"] = representative[frame["pin"].to_numpy()].astype(frame["pin"].dtype)
        return out

    return dataclasses.replace(split, **{name: remapped(getattr(split, name)) for name in WINDOWS})


def with_signature_feature(data: InteractionData, remap: bool | None) -> InteractionData:
    """The data with the pins' `image_signature` feature at the level `remap` asks for.

    None leaves the data as loaded; true sets the coarse signature, false the fine one. Data
    without the feature or without the signature column is returned unchanged (remap=true on
    data without coarse signatures is refused by `pin_signatures`).

    Args:
        data: the data set.
        remap: `corpus.remap_image_signature`.
    """
    if remap is None or FEATURE not in data.pins.categorical:
        return data
    level = signature_level(remap)
    if level not in data.pins.meta:
        pin_signatures(data.pins, level)  # refuses a missing coarse signature
        return data
    values = np.asarray(data.pins.meta[level], dtype=np.int64)
    categorical = {**data.pins.categorical, FEATURE: CategoricalFeature.single(values, int(values.max()) + 1)}
    return dataclasses.replace(data, pins=dataclasses.replace(data.pins, categorical=categorical))


def feature_level(pins: FeatureTable) -> str | None:
    """Which signature the pins' `image_signature` feature holds: "coarse", "fine", "data" (neither)
    or None (no such feature); what a model artifact records, so a model is served as it was trained.

    Args:
        pins: the pin table.
    """
    feature = pins.categorical.get(FEATURE)
    if feature is None:
        return None
    for name, level in (("coarse", COARSE), ("fine", FINE)):
        column = pins.meta.get(level)
        if column is not None and np.array_equal(np.asarray(column), feature.values):
            return name
    return "data"
