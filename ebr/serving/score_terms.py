"""Additive terms of the served score: served score = model score + sum over terms of w * value(pin).

Each term is folded into the index as one extra coordinate (the user side carries the weight w, the
pin side the term's value), so the same inner-product index serves it, flat or approximate.

Why a popularity prior: the towers' L2-normalised embeddings with logQ-corrected training leave out
most of how much more often popular pins are engaged; on real data (MovieLens) a small prior,
w * log(1 + training-window engagements), with w chosen on the validation window, recovers it
(experiments/movielens.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ebr.data.schema import CLICK, Split


@dataclass(frozen=True)
class TrainingEngagements:
    """The training window's engagements (clicks and repins), the one count behind every popularity.

    The popularity baseline ranks by `counts`; the popularity prior serves log(1 + counts).

    Args:
        pins: the pin of each engagement.
        timestamps: its time in seconds (for time-decayed terms).
    """

    pins: np.ndarray
    timestamps: np.ndarray

    @classmethod
    def from_split(cls, split: Split) -> TrainingEngagements:
        """Read `split.train` (and nothing else)."""
        _, pins = split.train_engaged
        if "timestamp" in split.train.columns:
            engaged = split.train["event"].to_numpy() >= CLICK
            timestamps = split.train["timestamp"].to_numpy()[engaged].astype(np.int64, copy=False)
        else:
            timestamps = np.zeros(len(pins), dtype=np.int64)
        return cls(pins, timestamps)

    def counts(self, corpus: np.ndarray) -> np.ndarray:
        """Engagements of each corpus pin (int64, aligned with `corpus`).

        Args:
            corpus: sorted distinct pin ids.
        """
        corpus = np.asarray(corpus, dtype=np.int64)
        if len(corpus) == 0:
            return np.zeros(0, dtype=np.int64)
        position = np.minimum(np.searchsorted(corpus, self.pins), len(corpus) - 1)
        on_corpus = corpus[position] == self.pins
        return np.bincount(position[on_corpus], minlength=len(corpus)).astype(np.int64)


class ScoreTerm(Protocol):
    """One additive term of the served score."""

    @property
    def weight(self) -> float:
        """w: the term's weight in units of the model's score (0 switches it off)."""
        ...

    def pin_values(self, engagements: TrainingEngagements, corpus: np.ndarray) -> np.ndarray:
        """The term's value for each corpus pin, (len(corpus),) float32."""
        ...


@dataclass(frozen=True)
class PopularityPrior:
    """w * log(1 + training-window engagements of the pin).

    Args:
        weight: w >= 0; 0 serves the model's score alone.
    """

    weight: float = 0.0

    def __post_init__(self) -> None:
        check_weight(self.weight, "serving.score_terms.popularity_prior.weight")

    def pin_values(self, engagements: TrainingEngagements, corpus: np.ndarray) -> np.ndarray:
        return np.log1p(engagements.counts(corpus)).astype(np.float32)


def check_weight(weight: object, name: str) -> None:
    """Reject a weight that is not a finite number >= 0, naming the config key."""
    if (
        isinstance(weight, bool)
        or not isinstance(weight, int | float)
        or not np.isfinite(weight)
        or weight < 0
    ):
        raise ValueError(f"{name} must be a finite number >= 0, got {weight!r}")


@dataclass(frozen=True)
class ScoreColumns:
    """The active terms of a served corpus: one weight and one pin column per term with w > 0.

    Args:
        weights: (T,) the terms' weights.
        pin_values: (N, T) float32, row j for corpus pin j.
    """

    weights: np.ndarray
    pin_values: np.ndarray

    @classmethod
    def build(
        cls, terms: Sequence[ScoreTerm], engagements: TrainingEngagements, corpus: np.ndarray
    ) -> ScoreColumns:
        """Evaluate the terms with a positive weight on the corpus.

        Args:
            terms: the configured terms.
            engagements: the training window's engagements.
            corpus: sorted pin ids of the served corpus.
        """
        active = [term for term in terms if term.weight > 0]
        columns = [np.asarray(term.pin_values(engagements, corpus), dtype=np.float32) for term in active]
        for term, column in zip(active, columns):
            if column.shape != (len(corpus),):
                raise ValueError(
                    f"{type(term).__name__}.pin_values returned shape {column.shape} for {len(corpus)} pins"
                )
        values = np.stack(columns, axis=1) if columns else np.zeros((len(corpus), 0), dtype=np.float32)
        return cls(np.array([term.weight for term in active], dtype=np.float64), values)

    @property
    def width(self) -> int:
        return len(self.weights)

    def extend_pins(self, pin_embeddings: np.ndarray) -> np.ndarray:
        """Pin vectors with the term columns appended (unchanged without active terms)."""
        if not self.width:
            return pin_embeddings
        return np.ascontiguousarray(np.hstack([pin_embeddings, self.pin_values.astype(pin_embeddings.dtype)]))

    def extend_users(self, user_embeddings: np.ndarray) -> np.ndarray:
        """User vectors with the terms' weights appended (unchanged without active terms)."""
        if not self.width:
            return user_embeddings
        weights = np.broadcast_to(
            self.weights.astype(user_embeddings.dtype), (len(user_embeddings), self.width)
        )
        return np.ascontiguousarray(np.hstack([user_embeddings, weights]))
