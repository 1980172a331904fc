"""A popularity prior added to the served score: inner product = model score + w * log(1 + n_p).

n_p is the number of training-window engagements (click or repin) of pin p. The prior is folded
into the index as one extra coordinate (the user side carries w, the pin side log(1 + n_p)), so the
same inner-product index, flat or HNSW, serves it.

Why: the towers' L2-normalised embeddings with logQ-corrected training leave out most of how much
more often popular pins are engaged; on real data (MovieLens) a small prior, with its weight chosen
on the validation window, recovers it. See experiments/movielens.md.
"""

from __future__ import annotations

import numpy as np

from ebr.data.schema import Split, engaged_pairs


def pin_log_engagements(split: Split, corpus: np.ndarray) -> np.ndarray:
    """log(1 + training-window engagements) of each corpus pin (only `split.train` is read).

    Args:
        split: the time split.
        corpus: sorted distinct pin ids.
    """
    _, engaged_pins = engaged_pairs(split.train, "split.train")
    position = np.searchsorted(corpus, engaged_pins)
    position = np.minimum(position, len(corpus) - 1)
    on_corpus = corpus[position] == engaged_pins
    counts = np.bincount(position[on_corpus], minlength=len(corpus))
    return np.log1p(counts).astype(np.float32)


def with_popularity_prior(
    user_embeddings: np.ndarray, pin_embeddings: np.ndarray, pin_log_counts: np.ndarray, weight: float
) -> tuple[np.ndarray, np.ndarray]:
    """The embeddings with the prior's coordinate appended (unchanged when weight is 0).

    Args:
        user_embeddings: (M, d) user vectors.
        pin_embeddings: (N, d) pin vectors.
        pin_log_counts: (N,) log(1 + engagements) of the pins, row-aligned with pin_embeddings.
        weight: w >= 0, the prior's weight in units of the model's score.
    """
    if not np.isfinite(weight) or weight < 0:
        raise ValueError(f"popularity_prior must be a finite number >= 0, got {weight!r}")
    if len(pin_log_counts) != len(pin_embeddings):
        raise ValueError(
            f"pin_log_counts has {len(pin_log_counts)} rows for {len(pin_embeddings)} pin embeddings"
        )
    if weight == 0:
        return user_embeddings, pin_embeddings
    users = np.hstack([user_embeddings, np.full((len(user_embeddings), 1), weight, user_embeddings.dtype)])
    pins = np.hstack([pin_embeddings, pin_log_counts[:, None].astype(pin_embeddings.dtype)])
    return np.ascontiguousarray(users), np.ascontiguousarray(pins)
