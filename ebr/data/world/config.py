"""Configuration of the synthetic world: sizes, knobs and the model constants, validated and hashable.

Every phenomenon that makes one of the ebr techniques matter is a knob whose value 0 switches it off
(see docs/world.md). The config is the whole identity of a world: the same config (including `seed`)
always generates the same data, and `WorldConfig.hash()` names its cache directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

# Bumped whenever the generator's output for a given config changes, so stale caches are not reused.
# 2: per-interest user taste, the personalised logging policy, the truth's taste decomposition.
GENERATOR_VERSION = 2

# Fields that must be integers >= the given minimum.
_INT_MINIMUM: dict[str, int] = {
    "seed": 0,
    "n_users": 1,
    "n_pins": 2,
    "n_interests": 1,
    "n_days": 1,
    "n_countries": 1,
    "n_age_buckets": 1,
    "n_genders": 1,
    "n_pin_categories": 1,
    "n_formats": 1,
    "latent_dim": 1,
    "impressions_per_session": 1,
    "max_user_interests": 1,
    "max_duplicate_cluster_size": 2,
    "impression_gap_seconds": 2,
    "policy_shortlist": 1,
}
# Fields that are fractions in [0, 1].
_FRACTIONS = (
    "near_duplicates",
    "exploration_rate",
    "second_interest_prob",
    "source_taste",
    "new_pin_fraction",
    "trend_floor",
    "interest_drift",
)
# Fields that must be strictly positive.
_POSITIVE = (
    "sessions_per_user_day",
    "history_days",
    "trend_rise_days",
    "trend_lifetime_min_days",
    "trend_lifetime_max_days",
    "interest_weight_concentration",
    "interest_drift_days",
)


@dataclass(frozen=True)
class WorldConfig:
    """All parameters of a synthetic Pinterest-like world. Every knob at 0 switches its phenomenon off.

    Args:
        seed: the world's seed (fixed across the training seeds of a sweep; 0 is a real seed).
        n_users: number of users.
        n_pins: number of pins, near-duplicates included.
        n_interests: size of the interest vocabulary.
        n_days: length of the simulated horizon in days (events lie in [0, n_days * 86400)).
        n_countries: cardinality of the user feature `country`.
        n_age_buckets: cardinality of `age_bucket`.
        n_genders: cardinality of `gender`.
        n_pin_categories: cardinality of the pin feature `category`.
        n_formats: cardinality of the pin feature `format`.
        latent_dim: dimension L of the true taste vectors.
        sessions_per_user_day: mean sessions per user and day over all users.
        activity_spread: sigma of the lognormal spread of users' activity around that mean (0: all equal).
        impressions_per_session: pins shown per session.
        impression_gap_seconds: seconds between consecutive impressions of a session.
        feature_interaction: weight of the multiplicative feature-combination part of the taste vectors
            (country x age x top interest for users, category x format x interest for pins).
        idiosyncrasy: weight of per-user / per-pin random taste and of per-pin quality (not explained
            by features).
        label_noise: std of per-impression Gaussian noise added to the logit when drawing events.
        trend_strength: exponent of pins' time-varying popularity; > 0 also spreads creation times
            over the horizon, 0 makes every pin exist from the start with flat popularity.
        near_duplicates: fraction of pins that belong to near-duplicate clusters sharing a coarse signature.
        multi_interest: mean number of extra interests per user, relative to `extra_interests_mean`
            (0: exactly one interest each).
        interest_taste: how much a user's own taste differs between their interests (0: one own taste
            for every interest, so a single user vector expresses the truth).
        policy_personalization: how strongly the logging policy's pick among its shortlist follows the
            user's own (idiosyncratic) taste term of the logit (0: not at all; logs then reflect only
            interests, quality and trends).
        source_taste: share of impressions whose engagement follows the user's taste for the
            session's source interest (the interest the logging policy surfaced the pin through)
            instead of the pin's tag they weigh most; it differs for a pin carrying two interests the
            user follows (0: the pin's tags alone decide, ebr.data.world.sessions).
        extra_interests_mean: mean number of interests beyond the first at multi_interest = 1.
        max_user_interests: cap on the number of interests of a user.
        interest_weight_concentration: Gamma shape of the users' interest weights (small: very unequal).
        interest_zipf: Zipf exponent of interest popularity (0: all interests equally popular).
        second_interest_prob: probability that a pin carries a second interest tag.
        base_logit: intercept of the engagement logit.
        affinity_scale: multiplier of <z_u, z_p> in the logit.
        interest_match_weight: multiplier of the user's weight on the pin's interest in the logit.
        interaction_ratio: rms norm of the multiplicative part relative to the additive one at knob 1.
        idiosyncrasy_ratio: rms norm of the random taste part relative to the additive one at knob 1.
        pin_quality_std: std of the per-pin quality logit at idiosyncrasy 1.
        duplicate_jitter: rms norm of the per-pin jitter of near-duplicates, relative to the taste vector,
            at idiosyncrasy 1.
        repin_offset: added to the click logit to get the repin logit (P(repin | click)).
        exploration_rate: fraction of impressions the logging policy fills with a uniformly random pin.
        policy_quality_weight: how strongly the logging policy favours high-quality pins (exp(w * quality)).
        policy_shortlist: pins the logging policy draws per impression (by interest, quality and trend)
            before picking one by the user's own taste.
        new_pin_fraction: with trends on, the fraction of pins created during the horizon.
        history_days: pre-existing pins are created uniformly within this many days before day 0.
        trend_rise_days: time constant of a pin's rise after creation.
        trend_lifetime_min_days: smallest per-pin popularity lifetime (log-uniform).
        trend_lifetime_max_days: largest per-pin popularity lifetime.
        trend_floor: popularity level a pin decays to, relative to its peak.
        duplicate_cluster_mean: mean size of a near-duplicate cluster (sizes 2..max, shifted geometric).
        max_duplicate_cluster_size: largest near-duplicate cluster.
        duplicate_delay_days: mean delay of a duplicate's creation after the cluster's original (with trends
            on); the members of a cluster differ in freshness by it (0: created together, equally fresh).
        interest_drift: in [0, 1], how far a user's current interest mix moves towards the one interest
            they are focused on at the time (ebr.data.world.drift; 0: a static mix, order carries nothing).
        interest_drift_days: mean number of days a user's focus lasts before it is redrawn.
    """

    seed: int = 0
    n_users: int = 20_000
    n_pins: int = 10_000
    n_interests: int = 32
    n_days: int = 60
    n_countries: int = 8
    n_age_buckets: int = 6
    n_genders: int = 3
    n_pin_categories: int = 24
    n_formats: int = 3
    latent_dim: int = 16
    sessions_per_user_day: float = 0.4
    activity_spread: float = 0.8
    impressions_per_session: int = 8
    impression_gap_seconds: int = 12
    # knobs: 0 switches the phenomenon off
    feature_interaction: float = 1.0
    idiosyncrasy: float = 1.0
    label_noise: float = 1.0
    trend_strength: float = 1.0
    near_duplicates: float = 0.2
    multi_interest: float = 1.0
    interest_taste: float = 2.0
    policy_personalization: float = 2.0
    source_taste: float = 0.0
    # interests
    extra_interests_mean: float = 2.0
    max_user_interests: int = 6
    interest_weight_concentration: float = 1.0
    interest_zipf: float = 0.6
    second_interest_prob: float = 0.3
    # engagement model
    base_logit: float = -4.7
    affinity_scale: float = 4.0
    interest_match_weight: float = 1.5
    interaction_ratio: float = 0.7
    idiosyncrasy_ratio: float = 0.5
    pin_quality_std: float = 0.5
    duplicate_jitter: float = 0.05
    repin_offset: float = -0.3
    # logging policy
    exploration_rate: float = 0.05
    policy_quality_weight: float = 1.0
    policy_shortlist: int = 4
    # pin life cycle
    new_pin_fraction: float = 0.5
    history_days: float = 30.0
    trend_rise_days: float = 0.5
    trend_lifetime_min_days: float = 3.0
    trend_lifetime_max_days: float = 60.0
    trend_floor: float = 0.05
    # near-duplicates
    duplicate_cluster_mean: float = 3.0
    max_duplicate_cluster_size: int = 6
    duplicate_delay_days: float = 5.0
    # interest drift (ebr.data.world.drift): 0 leaves every event of the static world unchanged
    interest_drift: float = 0.0
    interest_drift_days: float = 7.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", int):
                if isinstance(value, bool) or not isinstance(value, int | np.integer):
                    raise TypeError(f"WorldConfig.{f.name} must be an int, got {value!r}")
                object.__setattr__(self, f.name, int(value))
            elif isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
                raise TypeError(f"WorldConfig.{f.name} must be a number, got {value!r}")
            else:
                # ints are accepted for float fields (YAML `0`), stored as float so the hash is stable
                if not math.isfinite(float(value)):
                    raise ValueError(f"WorldConfig.{f.name} must be finite, got {value!r}")
                object.__setattr__(self, f.name, float(value))
        self._check_ranges()

    def _check_ranges(self) -> None:
        for name, minimum in _INT_MINIMUM.items():
            if getattr(self, name) < minimum:
                raise ValueError(f"WorldConfig.{name} must be >= {minimum}, got {getattr(self, name)}")
        signed = ("base_logit", "repin_offset")
        for f in dataclasses.fields(self):
            if f.name not in _INT_MINIMUM and f.name not in signed and getattr(self, f.name) < 0:
                raise ValueError(f"WorldConfig.{f.name} must be >= 0, got {getattr(self, f.name)}")
        for name in _FRACTIONS:
            if getattr(self, name) > 1:
                raise ValueError(f"WorldConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in _POSITIVE:
            if getattr(self, name) <= 0:
                raise ValueError(f"WorldConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.trend_floor <= 0:
            raise ValueError(f"WorldConfig.trend_floor must be in (0, 1], got {self.trend_floor}")
        if self.trend_lifetime_max_days < self.trend_lifetime_min_days:
            raise ValueError(
                "WorldConfig.trend_lifetime_max_days must be >= trend_lifetime_min_days, got "
                f"{self.trend_lifetime_max_days} < {self.trend_lifetime_min_days}"
            )
        if not 2 <= self.duplicate_cluster_mean <= self.max_duplicate_cluster_size:
            raise ValueError(
                "WorldConfig.duplicate_cluster_mean must be in [2, max_duplicate_cluster_size], got "
                f"{self.duplicate_cluster_mean}"
            )
        session_seconds = self.impressions_per_session * self.impression_gap_seconds
        if session_seconds >= 86_400:
            raise ValueError(
                "WorldConfig.impressions_per_session * impression_gap_seconds must be under one day, got "
                f"{session_seconds} s"
            )
        if self.seed >= 2**63:
            raise ValueError(f"WorldConfig.seed must be < 2**63, got {self.seed}")

    def to_dict(self) -> dict[str, Any]:
        """All fields as plain Python values (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> WorldConfig:
        """Build a config from a mapping (e.g. a manifest or an OmegaConf node).

        Args:
            values: field name -> value; unknown names are an error.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown WorldConfig field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**dict(values))

    def canonical_json(self) -> str:
        """The canonical JSON of all fields (sorted keys, no whitespace); the input of `hash`."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def hash(self) -> str:
        """Stable hex digest (16 hex chars of SHA-256) of the canonical JSON of all fields."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]


# The Hydra config group and name of the world's structured config (conf/data/synthetic.yaml uses it).
SCHEMA_GROUP, SCHEMA_NAME = "schema", "world"
# How a config names WorldConfig (its public import path).
WORLD_CONFIG_TARGET = "ebr.data.world.WorldConfig"
_FIELD_TYPES = {"int": int, "float": float}


def world_config_schema() -> type:
    """A dataclass with WorldConfig's fields and defaults plus `_target_`, for Hydra's ConfigStore.

    The schema is derived from WorldConfig, so the dataclass stays the only place that lists the
    defaults; the typed node still rejects a mistyped key or a wrongly typed value, naming it.
    """
    fields = [("_target_", str, dataclasses.field(default=WORLD_CONFIG_TARGET))]
    for f in dataclasses.fields(WorldConfig):
        kind = _FIELD_TYPES.get(f.type) if isinstance(f.type, str) else f.type
        if kind not in (int, float):
            raise TypeError(f"WorldConfig.{f.name}: no config schema type for annotation {f.type!r}")
        fields.append((f.name, kind, dataclasses.field(default=f.default)))
    return dataclasses.make_dataclass("WorldConfigSchema", fields)


def register_world_schema() -> None:
    """Store the world's structured config as `schema/world` in Hydra's ConfigStore.

    conf/data/synthetic.yaml puts it at `data.config` (`- /schema/world@config`), so the YAML files
    list only what differs from WorldConfig's defaults. Call this before composing a config.
    """
    # Hydra is only needed by config composition, not by world generation
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(group=SCHEMA_GROUP, name=SCHEMA_NAME, node=world_config_schema())


# Named random streams: each component draws from its own stream, so changing one knob does not
# reshuffle the random numbers of unrelated components (a knob's control world is the same world
# with only that phenomenon removed).
STREAMS: dict[str, int] = {
    "interests": 1,
    "users": 2,
    "user_interests": 3,
    "pins": 4,
    "pin_life": 5,
    "duplicates": 6,
    "taste": 7,
    "events": 8,
    "interest_taste": 9,
    "source_taste": 10,
    # a number far from the others', so knobs added beside it do not collide
    "interest_drift": 29,
}


def stream(seed: int, name: str, *keys: int) -> np.random.Generator:
    """A PCG64 generator for the named component, derived from the world seed only.

    Args:
        seed: the world seed.
        name: a key of `STREAMS`.
        keys: further non-negative integers (e.g. the day) selecting an independent sub-stream.
    """
    if name not in STREAMS:
        raise KeyError(f"unknown random stream '{name}'; known: {sorted(STREAMS)}")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, STREAMS[name], *keys])))
