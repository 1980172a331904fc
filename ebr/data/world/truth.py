"""The world's truth: the hidden taste vectors of users and pins and the true engagement model.

engagement logit(u, p, t) = base_logit + affinity_scale * <z_u, z_p> + interest_match_weight * w_u(p)
                            + quality_p + trend_strength * log trend_p(t)

where w_u(p) is the user's weight on the pin's interest (the larger over the pin's tags) and trend_p(t)
is 0 before the pin's creation, rises within `trend_rise_days` and decays over its lifetime to
`trend_floor`. p_click = sigmoid(logit); p_repin = sigmoid(logit + repin_offset) is P(repin | click).
Taste vectors are built in `build_truth`; see docs/world.md for the scales.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from ebr.data.csr import Ragged
from ebr.data.schema import SECONDS_PER_DAY
from ebr.data.world.config import WorldConfig, stream
from ebr.data.world.entities import PinEntities, UserEntities

# Weight of the demographic / category-and-format embeddings next to the interest embeddings in the
# additive taste part (interests dominate taste, as on Pinterest).
DEMOGRAPHIC_WEIGHT = 0.5
# Weight of a pin's second interest tag in its additive taste part.
SECOND_TAG_WEIGHT = 0.5
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
)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function without overflow warnings."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@dataclass(frozen=True, eq=False)
class SyntheticTruth:
    """The true engagement model of a synthetic world (implements `ebr.data.schema.GroundTruth`).

    Args:
        user_vectors: float32 (n_users, L) true user taste z_u.
        pin_vectors: float32 (n_pins, L) true pin taste z_p.
        pin_quality: float32 (n_pins,) per-pin quality logit.
        pin_created_at: int64 (n_pins,) creation time in seconds.
        pin_lifetime_days: float32 (n_pins,) popularity lifetime.
        pin_interests: int64 (n_pins, 2) primary and second interest tag (-1: none).
        user_interest_offsets: int64 (n_users + 1,) CSR offsets of the users' interests.
        user_interest_values: int64 interest ids.
        user_interest_weights: float32 interest weights.
        n_interests: size of the interest vocabulary.
        base_logit: intercept of the logit.
        affinity_scale: multiplier of <z_u, z_p>.
        interest_match_weight: multiplier of the user's weight on the pin's interest.
        trend_strength: exponent of the popularity trend (0: flat).
        trend_rise_days: rise time constant after creation.
        trend_floor: level the trend decays to.
        repin_offset: repin logit minus click logit.
    """

    user_vectors: np.ndarray
    pin_vectors: np.ndarray
    pin_quality: np.ndarray
    pin_created_at: np.ndarray
    pin_lifetime_days: np.ndarray
    pin_interests: np.ndarray
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
    _keys: np.ndarray = field(init=False, repr=False)
    _key_weights: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        interests = Ragged(self.user_interest_offsets, self.user_interest_values)
        keys = interests.row_of_value() * self.n_interests + self.user_interest_values
        order = np.argsort(keys, kind="stable")
        object.__setattr__(self, "_keys", keys[order])
        object.__setattr__(self, "_key_weights", self.user_interest_weights[order])

    @property
    def n_users(self) -> int:
        """Number of users."""
        return len(self.user_vectors)

    @property
    def n_pins(self) -> int:
        """Number of pins."""
        return len(self.pin_vectors)

    def interest_weight(self, users: np.ndarray, interests: np.ndarray) -> np.ndarray:
        """The users' weights on the given interests (0 for interests a user does not have, or -1).

        Args:
            users: int user ids; broadcasts against `interests`.
            interests: int interest ids (-1 allowed, meaning none).
        """
        users, interests = np.broadcast_arrays(np.asarray(users, np.int64), np.asarray(interests, np.int64))
        query = users * self.n_interests + interests
        index = np.minimum(np.searchsorted(self._keys, query), len(self._keys) - 1)
        found = (self._keys[index] == query) & (interests >= 0)
        return np.where(found, self._key_weights[index], 0.0)

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
        affinity = np.einsum("ij,ij->i", self.user_vectors[users], self.pin_vectors[pins]).astype(np.float64)
        match = np.maximum(
            self.interest_weight(users, self.pin_interests[pins, 0]),
            self.interest_weight(users, self.pin_interests[pins, 1]),
        )
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
        self, users: np.ndarray, pins: np.ndarray, timestamp: np.ndarray | float
    ) -> tuple[np.ndarray, np.ndarray]:
        """(p_click, p_repin | click) of showing `pins` to `users` at `timestamp`; 0 for uncreated pins.

        The unconditional repin probability is p_click * p_repin.

        Args:
            users: int user ids, broadcasting against `pins` (e.g. (M, 1) with (M, K)).
            pins: int pin ids.
            timestamp: seconds; a scalar or an array broadcasting with users and pins.
        """
        logit, exists = self.logits(users, pins, timestamp)
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


def _rms(x: np.ndarray) -> float:
    value = float(np.sqrt(np.mean(np.sum(x * x, axis=1))))
    return value if value > 0 else 1.0


def _mix(
    additive: np.ndarray, interaction: np.ndarray, random: np.ndarray, config: WorldConfig
) -> np.ndarray:
    """Normalised mix of the three taste parts; the knobs change its composition, not its scale."""
    c_int = config.feature_interaction * config.interaction_ratio
    c_rand = config.idiosyncrasy * config.idiosyncrasy_ratio
    mixed = (
        additive / _rms(additive) + c_int * interaction / _rms(interaction) + c_rand * random / _rms(random)
    )
    return mixed / np.sqrt(1.0 + c_int**2 + c_rand**2)


def build_truth(config: WorldConfig, users: UserEntities, pins: PinEntities) -> SyntheticTruth:
    """Draw the latent taste parameters and assemble the world's true engagement model.

    Args:
        config: the world config.
        users: the users' observable attributes.
        pins: the pins' observable attributes.
    """
    rng = stream(config.seed, "taste")
    dim, n_int = config.latent_dim, config.n_interests

    def table(rows: int) -> np.ndarray:  # rows of rms norm ~1
        return rng.standard_normal((rows, dim)) / np.sqrt(dim)

    e_int, e_country, e_age, e_gender = (
        table(n) for n in (n_int, config.n_countries, config.n_age_buckets, config.n_genders)
    )
    f_cat, f_fmt = table(config.n_pin_categories), table(config.n_formats)
    g_country, g_age, g_int = (
        rng.standard_normal((n, dim)) for n in (config.n_countries, config.n_age_buckets, n_int)
    )
    h_cat, h_fmt, h_int = (
        rng.standard_normal((n, dim)) for n in (config.n_pin_categories, config.n_formats, n_int)
    )
    user_random, pin_random, jitter = table(config.n_users), table(config.n_pins), table(config.n_pins)
    quality_raw = rng.standard_normal(config.n_pins)

    # users: weight-averaged interest embeddings + demographics; product of country x age x top interest
    weighted = users.interest_weights[:, None].astype(np.float64) * e_int[users.interest_values]
    interest_part = np.add.reduceat(weighted, users.interest_offsets[:-1], axis=0)
    demographics = e_country[users.country] + e_age[users.age_bucket] + e_gender[users.gender]
    user_interaction = g_country[users.country] * g_age[users.age_bucket] * g_int[users.top_interest]
    user_vectors = _mix(
        interest_part + DEMOGRAPHIC_WEIGHT * demographics, user_interaction, user_random, config
    )

    # pins: the same interest embeddings, so matching interests align; near-duplicates share their
    # original's features (copied in entities) and random parts, plus a tiny per-pin jitter
    has_second = pins.second_interest >= 0
    second = np.where(has_second[:, None], e_int[np.maximum(pins.second_interest, 0)], 0.0)
    pin_additive = e_int[pins.interest] + SECOND_TAG_WEIGHT * second
    pin_additive += DEMOGRAPHIC_WEIGHT * (f_cat[pins.category] + f_fmt[pins.format])
    pin_interaction = h_cat[pins.category] * h_fmt[pins.format] * h_int[pins.interest]
    pin_vectors = _mix(pin_additive, pin_interaction, pin_random[pins.origin], config)
    in_cluster = (pins.cluster_size > 1)[:, None]
    pin_vectors = pin_vectors + np.where(
        in_cluster, config.idiosyncrasy * config.duplicate_jitter * jitter, 0.0
    )
    quality = config.idiosyncrasy * config.pin_quality_std * quality_raw[pins.origin]

    return SyntheticTruth(
        user_vectors=user_vectors.astype(np.float32),
        pin_vectors=pin_vectors.astype(np.float32),
        pin_quality=quality.astype(np.float32),
        pin_created_at=pins.created_at,
        pin_lifetime_days=pins.lifetime_days.astype(np.float32),
        pin_interests=np.stack([pins.interest, pins.second_interest], axis=1),
        user_interest_offsets=users.interest_offsets,
        user_interest_values=users.interest_values,
        user_interest_weights=users.interest_weights,
        n_interests=n_int,
        base_logit=config.base_logit,
        affinity_scale=config.affinity_scale,
        interest_match_weight=config.interest_match_weight,
        trend_strength=config.trend_strength,
        trend_rise_days=config.trend_rise_days,
        trend_floor=config.trend_floor,
        repin_offset=config.repin_offset,
    )
