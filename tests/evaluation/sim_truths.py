"""Small stand-ins for a world's truth (the `GroundTruth` protocol) used by the simulation tests."""

from __future__ import annotations

import numpy as np


def _shape(users, pins) -> tuple[int, ...]:
    return np.broadcast_shapes(np.shape(users), np.shape(pins))


class FixedTruth:
    """Every pin has the same click and repin probability; the true score is the pin id; no noise."""

    label_noise = 0.0

    def __init__(self, p_click: float, p_repin: float, groups: dict[int, int] | None = None) -> None:
        self.p_click, self.p_repin = p_click, p_repin
        self.groups = groups or {}

    def engagement_probabilities(self, users, pins, timestamp, noise=None):
        shape = _shape(users, pins)
        return np.full(shape, self.p_click), np.full(shape, self.p_repin)

    def true_score(self, users, pins, timestamp):
        return np.broadcast_to(np.asarray(pins, dtype=np.float64), _shape(users, pins))

    def near_duplicate_groups(self, pins):
        pins = np.asarray(pins)
        return np.vectorize(lambda p: self.groups.get(int(p), int(p)), otypes=[np.int64])(pins)


class ReversedTruth(FixedTruth):
    """Fixed probabilities; the lower the pin id, the higher the true score."""

    def true_score(self, users, pins, timestamp):
        return -super().true_score(users, pins, timestamp)


class TopOnlyTruth(FixedTruth):
    """Pins with id >= threshold are always clicked, others never (whatever the noise); score = pin id."""

    def __init__(self, threshold: int, label_noise: float = 0.0) -> None:
        super().__init__(0.0, 0.0)
        self.threshold, self.label_noise = threshold, label_noise

    def engagement_probabilities(self, users, pins, timestamp, noise=None):
        pins = np.broadcast_to(pins, _shape(users, pins))
        return (pins >= self.threshold).astype(np.float64), np.zeros(pins.shape)


class TableTruth:
    """A world in miniature: pin p has logit `scores[p]` (or `scores[u, p]`), with the world's noise model.

    p_click = sigmoid(logit + label_noise * noise) and p_repin = sigmoid(that + repin_offset), as
    `SyntheticTruth`; `groups[p]` is pin p's near-duplicate group (default: its own id).
    """

    def __init__(
        self,
        scores: np.ndarray,
        label_noise: float = 1.0,
        repin_offset: float = -0.5,
        groups: np.ndarray | None = None,
    ) -> None:
        self.scores = np.asarray(scores, dtype=np.float64)
        self.label_noise, self.repin_offset = label_noise, repin_offset
        self.groups = np.arange(self.scores.shape[-1]) if groups is None else np.asarray(groups)

    def true_score(self, users, pins, timestamp):
        if self.scores.ndim == 2:
            users, pins = np.broadcast_arrays(np.asarray(users), np.asarray(pins))
            return self.scores[users, pins]
        return np.broadcast_to(self.scores[np.asarray(pins)], _shape(users, pins))

    def engagement_probabilities(self, users, pins, timestamp, noise=None):
        logit = self.true_score(users, pins, timestamp)
        if noise is not None:
            logit = logit + self.label_noise * noise
        return 1 / (1 + np.exp(-logit)), 1 / (1 + np.exp(-(logit + self.repin_offset)))

    def near_duplicate_groups(self, pins):
        return self.groups[np.asarray(pins)]


def candidates(n_users: int, n_candidates: int, rng: np.random.Generator, high: int = 1000) -> np.ndarray:
    """Distinct random pin ids in [0, high) per user."""
    return np.stack([rng.choice(high, n_candidates, replace=False) for _ in range(n_users)])
