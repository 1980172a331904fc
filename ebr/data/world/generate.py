"""Assemble a whole synthetic world: entities, truth, events, and the canonical feature tables."""

from __future__ import annotations

import numpy as np

from ebr.data.csr import offsets_from_lengths
from ebr.data.schema import CategoricalFeature, FeatureTable, InteractionData, validate_events
from ebr.data.world.config import WorldConfig
from ebr.data.world.entities import PinEntities, UserEntities, draw_pins, draw_users
from ebr.data.world.events import simulate_events
from ebr.data.world.taste import build_truth

WORLD_NAME = "synthetic"


def generate_world(config: WorldConfig) -> InteractionData:
    """Generate the world described by `config`; pure and deterministic in the config (seed included).

    Args:
        config: the world config.

    Returns:
        InteractionData named "synthetic", source "synthetic:<config hash>", with the truth attached.
    """
    if not isinstance(config, WorldConfig):
        raise TypeError(f"generate_world expects a WorldConfig, got {type(config).__name__}")
    users = draw_users(config)
    pins = draw_pins(config)
    truth = build_truth(config, users, pins)
    source = f"synthetic:{config.hash()}"
    events = validate_events(
        simulate_events(config, users, pins, truth), config.n_users, config.n_pins, source
    )
    return InteractionData(
        name=WORLD_NAME,
        events=events,
        users=user_table(config, users),
        pins=pin_table(config, pins),
        n_interests=config.n_interests,
        source=source,
        truth=truth,
    )


def user_table(config: WorldConfig, users: UserEntities) -> FeatureTable:
    """The users' model-visible features.

    Args:
        config: the world config (cardinalities).
        users: the drawn user attributes.
    """
    n = config.n_users
    return FeatureTable(
        n_rows=n,
        categorical={
            "user_id": CategoricalFeature.single(np.arange(n), n),
            "country": CategoricalFeature.single(users.country, config.n_countries),
            "age_bucket": CategoricalFeature.single(users.age_bucket, config.n_age_buckets),
            "gender": CategoricalFeature.single(users.gender, config.n_genders),
            "interests": CategoricalFeature(
                users.interest_offsets, users.interest_values, config.n_interests, users.interest_weights
            ),
        },
        # a profile attribute (how often the user comes), not a label: fine as a feature
        dense={"activity": np.log(users.activity).astype(np.float32)},
    )


def pin_table(config: WorldConfig, pins: PinEntities) -> FeatureTable:
    """The pins' model-visible features and meta data (no popularity: that would leak the future).

    Args:
        config: the world config (cardinalities).
        pins: the drawn pin attributes.
    """
    n = config.n_pins
    has_second = pins.second_interest >= 0
    offsets = offsets_from_lengths(1 + has_second)
    tags = np.stack([pins.interest, pins.second_interest], axis=1)
    return FeatureTable(
        n_rows=n,
        categorical={
            "pin_id": CategoricalFeature.single(np.arange(n), n),
            "interest": CategoricalFeature(offsets, tags[tags >= 0], config.n_interests),
            "category": CategoricalFeature.single(pins.category, config.n_pin_categories),
            "format": CategoricalFeature.single(pins.format, config.n_formats),
            "image_signature": CategoricalFeature.single(pins.coarse_signature, pins.n_signatures),
        },
        meta={
            "created_at": pins.created_at,
            "coarse_signature": pins.coarse_signature,
            "fine_signature": pins.fine_signature,
            "canonical_pin": pins.canonical_pin,
        },
    )
