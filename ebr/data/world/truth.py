"""The world's truth: the hidden taste vectors of users and pins and the true engagement model.

engagement logit(u, p, t) = base_logit + affinity_scale * <z_u(p), z_p> + interest_match_weight * w_u(p)
                            + quality_p + trend_strength * log trend_p(t)

where w_u(p) is the user's weight on the pin's interest (the larger over the pin's tags), z_u(p) the
user's taste for that interest (their general taste for a pin outside their interests) and trend_p(t)
is 0 before the pin's creation, rises within `trend_rise_days` and decays over its lifetime to
`trend_floor`. p_click = sigmoid(logit + label_noise * e); p_repin = sigmoid(that + repin_offset) is
P(repin | click), with e the impression's standard normal noise (0 for the expected-score model).
The taste vectors are drawn in `ebr.data.world.taste`; see docs/world.md for the scales.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from ebr.data.csr import Ragged
from ebr.data.schema import SECONDS_PER_DAY
from ebr.data.world.drift import drifted_weights, no_focus

# true_score of a pin that does not exist yet (its probabilities are exactly 0); finite so that
# arithmetic on scores never produces NaN.
UNCREATED_LOGIT = -30.0
# Smallest rise factor, so a pin shown in the second of its creation has a finite logit.
_MIN_RISE = 1e-6
# Pairs scored per chunk, bounding the memory of gathered taste vectors.
_CHUNK = 1 << 20

_SCALARS = (
    "n_interests",
    "base_logit",
    "affinity_scale",
    "interest_match_weight",
    "trend_strength",
    "trend_rise_days",
    "trend_floor",
    "repin_offset",
    "label_noise",
    "interest_drift",
)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function without overflow warnings."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@dataclass(frozen=True, eq=False)
class SyntheticTruth:
    """The true engagement model of a synthetic world (implements `ebr.data.schema.GroundTruth`).

    The taste arrays are stored decomposed, so an analysis can remove one part (e.g. a ranker that
    does not know the users' own taste is `dataclasses.replace(truth, user_vectors=truth.user_vectors
    - truth.user_own_taste, user_interest_taste=0 * truth.user_interest_taste)`).

    Args:
        user_vectors: float32 (n_users, L) general taste z_u: the interest-weighted average of the
            user's per-interest tastes, used for pins outside the user's interests.
        user_own_taste: float32 (n_users, L) the idiosyncratic (not feature-determined) part of
            `user_vectors`.
        user_interest_taste: float32 (n_entries, L), aligned with `user_interest_values`: the user's
            taste for that interest minus `user_vectors` (all 0 when `interest_taste` is 0).
        pin_vectors: float32 (n_pins, L) true pin taste z_p.
        pin_own_taste: float32 (n_pins, L) the idiosyncratic part of `pin_vectors`.
        pin_quality: float32 (n_pins,) per-pin quality logit.
        pin_created_at: int64 (n_pins,) creation time in seconds.
        pin_lifetime_days: float32 (n_pins,) popularity lifetime.
        pin_interests: int64 (n_pins, 2) primary and second interest tag (-1: none).
        pin_signature: int64 (n_pins,) coarse image signature, shared by near-duplicates.
        user_interest_offsets: int64 (n_users + 1,) CSR offsets of the users' interests.
        user_interest_values: int64 interest ids.
        user_interest_weights: float32 interest weights.
        n_interests: size of the interest vocabulary.
        base_logit: intercept of the logit.
        affinity_scale: multiplier of <z_u(p), z_p>.
        interest_match_weight: multiplier of the user's weight on the pin's interest.
        trend_strength: exponent of the popularity trend (0: flat).
        trend_rise_days: rise time constant after creation.
        trend_floor: level the trend decays to.
        repin_offset: repin logit minus click logit.
        label_noise: std of the per-impression logit noise of engagements.
        interest_drift: how far a user's current interest weights move towards their focus
            (ebr.data.world.drift; 0: the static weights `user_interest_weights` at every time).
        user_focus: int64 (n_users, n_days) the interest entry each user is focused on each day;
            (n_users, 0) without drift.
    """

    user_vectors: np.ndarray
    user_own_taste: np.ndarray
    user_interest_taste: np.ndarray
    pin_vectors: np.ndarray
    pin_own_taste: np.ndarray
    pin_quality: np.ndarray
    pin_created_at: np.ndarray
    pin_lifetime_days: np.ndarray
    pin_interests: np.ndarray
    pin_signature: np.ndarray
    user_interest_offsets: np.ndarray
    user_interest_values: np.ndarray
    user_interest_weights: np.ndarray
    n_interests: int
    base_logit: float
    affinity_scale: float
    interest_match_weight: float
    trend_strength: float
    trend_rise_days: float
    trend_floor: float
    repin_offset: float
    label_noise: float
    interest_drift: float = 0.0
    user_focus: np.ndarray = field(default_factory=lambda: no_focus(0))
    _keys: np.ndarray = field(init=False, repr=False)
    _key_entries: np.ndarray = field(init=False, repr=False)
    _per_interest: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        interests = Ragged(self.user_interest_offsets, self.user_interest_values)
        keys = interests.row_of_value() * self.n_interests + self.user_interest_values
        order = np.argsort(keys, kind="stable")
        object.__setattr__(self, "_keys", keys[order])
        object.__setattr__(self, "_key_entries", order.astype(np.int64))
        # most worlds of a sweep's control arms have no per-interest taste: skip its gathers there
        object.__setattr__(self, "_per_interest", bool(np.any(self.user_interest_taste)))
        if len(self.user_interest_taste) != len(self.user_interest_values):
            raise ValueError(
                f"SyntheticTruth.user_interest_taste has {len(self.user_interest_taste)} rows for"
                f" {len(self.user_interest_values)} user interests"
            )

    @property
    def n_users(self) -> int:
        """Number of users."""
        return len(self.user_vectors)

    @property
    def n_pins(self) -> int:
        """Number of pins."""
        return len(self.pin_vectors)

    def interest_entry(self, users: np.ndarray, interests: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(weight, entry) of the users' given interests; weight 0 and entry -1 where a user lacks one.

        `entry` indexes `user_interest_values` (and `user_interest_taste`).

        Args:
            users: int user ids; broadcasts against `interests`.
            interests: int interest ids (-1 allowed, meaning none).
        """
        users, interests = np.broadcast_arrays(np.asarray(users, np.int64), np.asarray(interests, np.int64))
        query = users * self.n_interests + interests
        index = np.minimum(np.searchsorted(self._keys, query), len(self._keys) - 1)
        found = (self._keys[index] == query) & (interests >= 0)
        entry = np.where(found, self._key_entries[index], -1)
        weight = np.where(found, self.user_interest_weights[np.maximum(entry, 0)], 0.0)
        return weight, entry

    def focus_at(self, users: np.ndarray, timestamp: np.ndarray | float) -> np.ndarray:
        """The interest entry each user is focused on at `timestamp` (needs interest drift).

        Times before the horizon take its first day's focus, times after it its last day's.

        Args:
            users: int user ids; broadcasts against `timestamp`.
            timestamp: seconds.
        """
        day = np.clip(np.asarray(timestamp, np.int64) // SECONDS_PER_DAY, 0, self.user_focus.shape[1] - 1)
        return self.user_focus[users, day]

    def current_entry_weights(self, timestamp: float) -> np.ndarray:
        """Every user interest entry's weight at `timestamp` (aligned with `user_interest_values`).

        Without interest drift these are the static `user_interest_weights` themselves.

        Args:
            timestamp: seconds (a scalar).
        """
        if not self.interest_drift:
            return self.user_interest_weights
        rows = Ragged(self.user_interest_offsets, self.user_interest_values).row_of_value()
        entries = np.arange(len(rows))
        focus = self.focus_at(rows, timestamp)
        return drifted_weights(self.user_interest_weights, entries, focus, self.interest_drift)

    def pin_match(
        self, users: np.ndarray, pins: np.ndarray, timestamp: np.ndarray | float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(w_u(p), entry) per user-pin pair: the pin's tag the user weighs most (entry -1: neither).

        Args:
            users: int user ids; broadcasts against `pins`.
            pins: int pin ids.
            timestamp: seconds, broadcasting too: with interest drift, the weights are the users'
                at that time (None: the static weights).
        """
        w0, e0 = self.interest_entry(users, self.pin_interests[pins, 0])
        w1, e1 = self.interest_entry(users, self.pin_interests[pins, 1])
        if self.interest_drift and timestamp is not None:
            focus = self.focus_at(users, timestamp)
            w0 = drifted_weights(w0, e0, focus, self.interest_drift)
            w1 = drifted_weights(w1, e1, focus, self.interest_drift)
        second = w1 > w0
        return np.where(second, w1, w0), np.where(second, e1, e0)

    def log_trend(self, pins: np.ndarray, timestamp: np.ndarray | float) -> np.ndarray:
        """log trend_p(t) for pins that exist at t (age >= 0); undefined (garbage) for the others.

        Args:
            pins: int pin ids.
            timestamp: seconds, broadcasting against `pins`.
        """
        age_days = np.maximum(np.asarray(timestamp) - self.pin_created_at[pins], 0) / SECONDS_PER_DAY
        rise = np.maximum(-np.expm1(-age_days / self.trend_rise_days), _MIN_RISE)
        decay = self.trend_floor + (1.0 - self.trend_floor) * np.exp(-age_days / self.pin_lifetime_days[pins])
        return np.log(rise) + np.log(decay)

    def logits(
        self, users: np.ndarray, pins: np.ndarray, timestamp: np.ndarray | float
    ) -> tuple[np.ndarray, np.ndarray]:
        """(engagement logit, pin exists) for broadcast users x pins at `timestamp` (seconds).

        The logit of a pin that does not exist yet is UNCREATED_LOGIT.

        Args:
            users: int user ids.
            pins: int pin ids.
            timestamp: seconds; a scalar or an array broadcasting with users and pins.
        """
        users, pins, times = np.broadcast_arrays(
            np.asarray(users, np.int64), np.asarray(pins, np.int64), np.asarray(timestamp, np.int64)
        )
        self._check_ids(users, pins)
        shape = users.shape
        users, pins, times = users.ravel(), pins.ravel(), times.ravel()
        logit = np.empty(len(users), dtype=np.float64)
        exists = self.pin_created_at[pins] <= times
        for start in range(0, len(users), _CHUNK):
            sl = slice(start, start + _CHUNK)
            logit[sl] = self._logit_flat(users[sl], pins[sl], times[sl])
        logit[~exists] = UNCREATED_LOGIT
        return logit.reshape(shape), exists.reshape(shape)

    def _logit_flat(self, users: np.ndarray, pins: np.ndarray, times: np.ndarray) -> np.ndarray:
        match, entry = self.pin_match(users, pins, times)
        taste = self.user_vectors[users]
        if self._per_interest:
            deviation = self.user_interest_taste[np.maximum(entry, 0)]
            taste = taste + np.where((entry >= 0)[:, None], deviation, 0.0)
        affinity = np.einsum("ij,ij->i", taste, self.pin_vectors[pins]).astype(np.float64)
        logit = self.base_logit + self.affinity_scale * affinity + self.interest_match_weight * match
        logit += self.pin_quality[pins]
        if self.trend_strength > 0:
            logit += self.trend_strength * self.log_trend(pins, times)
        return logit

    def _check_ids(self, users: np.ndarray, pins: np.ndarray) -> None:
        if users.size and (users.min() < 0 or users.max() >= self.n_users):
            raise IndexError(
                f"SyntheticTruth: user ids must be in [0, {self.n_users}), got {users.min()}..{users.max()}"
            )
        if pins.size and (pins.min() < 0 or pins.max() >= self.n_pins):
            raise IndexError(
                f"SyntheticTruth: pin ids must be in [0, {self.n_pins}), got {pins.min()}..{pins.max()}"
            )

    def engagement_probabilities(
        self,
        users: np.ndarray,
        pins: np.ndarray,
        timestamp: np.ndarray | float,
        noise: np.ndarray | None = None,
        shift: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(p_click, p_repin | click) of showing `pins` to `users` at `timestamp`; 0 for uncreated pins.

        Without `noise` these are the probabilities of the expected score; with it, those of one
        impression whose logit carries `label_noise * noise` (how the logs are drawn). The
        unconditional repin probability is p_click * p_repin.

        Args:
            users: int user ids, broadcasting against `pins` (e.g. (M, 1) with (M, K)).
            pins: int pin ids.
            timestamp: seconds; a scalar or an array broadcasting with users and pins.
            noise: standard normal draws per impression, broadcasting with users and pins.
            shift: added to the logit per impression (the session's source interest,
                ebr.data.world.sessions); None adds nothing.
        """
        logit, exists = self.logits(users, pins, timestamp)
        if shift is not None:
            logit = logit + shift
        if noise is not None:
            logit = logit + self.label_noise * np.asarray(noise, dtype=np.float64)
        p_click = np.where(exists, sigmoid(logit), 0.0)
        p_repin = np.where(exists, sigmoid(logit + self.repin_offset), 0.0)
        return p_click, p_repin

    def true_score(self, users: np.ndarray, pins: np.ndarray, timestamp: np.ndarray | float) -> np.ndarray:
        """The engagement logit: what a perfect ranker sorts by (UNCREATED_LOGIT for uncreated pins).

        Args:
            users: int user ids, broadcasting against `pins`.
            pins: int pin ids.
            timestamp: seconds; a scalar or an array broadcasting with users and pins.
        """
        return self.logits(users, pins, timestamp)[0]

    def score_matrix(self, users: np.ndarray, pins: np.ndarray, timestamp: float) -> np.ndarray:
        """(len(users), len(pins)) true scores of every user with every pin, through matrix products.

        Equal to `true_score(users[:, None], pins[None, :], timestamp)` up to float rounding, and much
        faster for whole blocks (e.g. ranking a corpus).

        Args:
            users: 1-D int user ids.
            pins: 1-D int pin ids.
            timestamp: seconds (a scalar).
        """
        users, pins = np.asarray(users, np.int64), np.asarray(pins, np.int64)
        if users.ndim != 1 or pins.ndim != 1:
            raise ValueError(f"score_matrix: users and pins must be 1-D, got {users.shape} and {pins.shape}")
        self._check_ids(users, pins)
        pin_vectors = self.pin_vectors[pins].astype(np.float64)
        affinity = self.user_vectors[users].astype(np.float64) @ pin_vectors.T
        # each user's interests as dense rows: weight and (local) entry per interest id
        counts = np.diff(self.user_interest_offsets)[users]
        rows = np.repeat(np.arange(len(users)), counts)
        first = self.user_interest_offsets[users] - (np.cumsum(counts) - counts)
        entries = np.repeat(first, counts) + np.arange(len(rows))
        weight = np.zeros((len(users), self.n_interests + 1))  # the last column: no tag
        local = np.full((len(users), self.n_interests + 1), -1, dtype=np.int64)
        weight[rows, self.user_interest_values[entries]] = self.current_entry_weights(timestamp)[entries]
        local[rows, self.user_interest_values[entries]] = np.arange(len(rows))
        tags = np.where(self.pin_interests[pins] >= 0, self.pin_interests[pins], self.n_interests)
        w0, w1 = weight[:, tags[:, 0]], weight[:, tags[:, 1]]
        second = w1 > w0
        match = np.where(second, w1, w0)
        if self._per_interest:
            entry = np.where(second, local[:, tags[:, 1]], local[:, tags[:, 0]])
            deviation = self.user_interest_taste[entries].astype(np.float64) @ pin_vectors.T
            matched = entry >= 0
            affinity[matched] += deviation[entry[matched], np.nonzero(matched)[1]]
        logit = self.base_logit + self.affinity_scale * affinity + self.interest_match_weight * match
        logit += self.pin_quality[pins].astype(np.float64)
        exists = self.pin_created_at[pins] <= timestamp
        if self.trend_strength > 0:
            logit += self.trend_strength * self.log_trend(pins, timestamp)
        logit[:, ~exists] = UNCREATED_LOGIT
        return logit

    def near_duplicate_groups(self, pins: np.ndarray) -> np.ndarray:
        """The near-duplicate group (coarse image signature) of each pin.

        Args:
            pins: int pin ids, any shape.
        """
        pins = np.asarray(pins, np.int64)
        if pins.size and (pins.min() < 0 or pins.max() >= self.n_pins):
            raise IndexError(f"SyntheticTruth: pin ids must be in [0, {self.n_pins})")
        return self.pin_signature[pins]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """All parameters as named arrays (scalars as 0-d arrays), e.g. for np.savez."""
        return {f.name: np.asarray(getattr(self, f.name)) for f in dataclasses.fields(self) if f.init}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> SyntheticTruth:
        """Inverse of `to_arrays`.

        Args:
            arrays: name -> array, e.g. an opened npz file.
        """
        names = [f.name for f in dataclasses.fields(cls) if f.init]
        missing = [n for n in names if n not in arrays]
        if missing:
            raise KeyError(f"SyntheticTruth.from_arrays: missing arrays {missing}")
        values = {n: np.asarray(arrays[n]) for n in names}
        for n in _SCALARS:
            values[n] = values[n].item()
        return cls(**values)
