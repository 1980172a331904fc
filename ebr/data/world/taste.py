"""Draw the hidden taste of users and pins and assemble the world's `SyntheticTruth`.

A taste vector mixes three parts, each normalised by its table-wide rms norm so that the knobs change
the *composition* of taste, not its scale: an additive part (interests plus demographics, or a pin's
interests plus category and format), a multiplicative part (feature combinations, weight
`feature_interaction * interaction_ratio`) and the entity's own random part (weight
`idiosyncrasy * idiosyncrasy_ratio`). A user's own part adds one more component per interest of
theirs (weight `idiosyncrasy * idiosyncrasy_ratio * interest_taste`), and their general taste
averages their per-interest tastes by interest weight.
"""

from __future__ import annotations

import numpy as np

from ebr.data.world.config import WorldConfig, stream
from ebr.data.world.drift import draw_focus
from ebr.data.world.entities import PinEntities, UserEntities
from ebr.data.world.truth import SyntheticTruth

# Weight of the demographic / category-and-format embeddings next to the interest embeddings in the
# additive taste part (interests dominate taste, as on Pinterest).
DEMOGRAPHIC_WEIGHT = 0.5
# Weight of a pin's second interest tag in its additive taste part.
SECOND_TAG_WEIGHT = 0.5


def _rms(x: np.ndarray) -> float:
    value = float(np.sqrt(np.mean(np.sum(x * x, axis=-1))))
    return value if value > 0 else 1.0


def mix_weights(config: WorldConfig, users: bool) -> tuple[float, float, float, float]:
    """(c_int, c_rand, c_interest, norm): the weights of the mix's parts and the norm dividing it.

    The additive part has weight 1; `c_interest` weighs the users' per-interest own taste (0 for
    pins). Dividing by `norm` keeps the taste's overall scale whatever the knobs.

    Args:
        config: the world.
        users: the user side (else the pin side).
    """
    c_int = config.feature_interaction * config.interaction_ratio
    c_rand = config.idiosyncrasy * config.idiosyncrasy_ratio
    c_interest = c_rand * config.interest_taste if users else 0.0
    return c_int, c_rand, c_interest, float(np.sqrt(1.0 + c_int**2 + c_rand**2 + c_interest**2))


def _mix(
    additive: np.ndarray, interaction: np.ndarray, random: np.ndarray, config: WorldConfig, users: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(feature-determined part, own part) of the normalised mix; their sum is the taste vector."""
    c_int, c_rand, _, norm = mix_weights(config, users)
    features = (additive / _rms(additive) + c_int * interaction / _rms(interaction)) / norm
    return features, c_rand * random / (_rms(random) * norm)


def _user_own_taste(
    config: WorldConfig, users: UserEntities, user_random: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(general own taste (n_users, L), deviation of each user interest's own taste (n_entries, L)).

    The own taste for interest e is (c_rand r_u + c_interest d_ue) / norm with r_u the user's random
    part and d_ue an independent one per interest (both of rms ~1); the general own taste is their
    interest-weighted average, so a user with a single interest has a single taste.
    """
    _, c_rand, c_interest, norm = mix_weights(config, users=True)
    lengths = np.diff(users.interest_offsets)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    slot = np.arange(len(rows)) - users.interest_offsets[rows]
    cap = min(config.max_user_interests, config.n_interests)
    # fixed shape (users x interest slots), so the draws do not depend on the interest counts
    draws = stream(config.seed, "interest_taste").standard_normal((config.n_users, cap, config.latent_dim))
    per_interest = draws[rows, slot] / np.sqrt(config.latent_dim)
    weights = users.interest_weights[:, None].astype(np.float64)
    weighted = np.add.reduceat(weights * per_interest, users.interest_offsets[:-1], axis=0)
    general = (c_rand * user_random / _rms(user_random) + c_interest * weighted) / norm
    # exactly 0 at interest_taste = 0 and for users with a single interest
    deviation = c_interest * (per_interest - weighted[rows]) / norm
    return general, deviation


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
    user_features, _ = _mix(
        interest_part + DEMOGRAPHIC_WEIGHT * demographics, user_interaction, user_random, config, users=True
    )
    user_own, user_interest_taste = _user_own_taste(config, users, user_random)

    # pins: the same interest embeddings, so matching interests align; near-duplicates share their
    # original's features (copied in entities) and random parts, plus a tiny per-pin jitter
    has_second = pins.second_interest >= 0
    second = np.where(has_second[:, None], e_int[np.maximum(pins.second_interest, 0)], 0.0)
    pin_additive = e_int[pins.interest] + SECOND_TAG_WEIGHT * second
    pin_additive += DEMOGRAPHIC_WEIGHT * (f_cat[pins.category] + f_fmt[pins.format])
    pin_interaction = h_cat[pins.category] * h_fmt[pins.format] * h_int[pins.interest]
    pin_features, pin_own = _mix(pin_additive, pin_interaction, pin_random[pins.origin], config, users=False)
    in_cluster = (pins.cluster_size > 1)[:, None]
    pin_own = pin_own + np.where(in_cluster, config.idiosyncrasy * config.duplicate_jitter * jitter, 0.0)
    quality = config.idiosyncrasy * config.pin_quality_std * quality_raw[pins.origin]

    return SyntheticTruth(
        user_vectors=(user_features + user_own).astype(np.float32),
        user_own_taste=user_own.astype(np.float32),
        user_interest_taste=user_interest_taste.astype(np.float32),
        pin_vectors=(pin_features + pin_own).astype(np.float32),
        pin_own_taste=pin_own.astype(np.float32),
        pin_quality=quality.astype(np.float32),
        pin_created_at=pins.created_at,
        pin_lifetime_days=pins.lifetime_days.astype(np.float32),
        pin_interests=np.stack([pins.interest, pins.second_interest], axis=1),
        pin_signature=pins.coarse_signature,
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
        label_noise=config.label_noise,
        interest_drift=config.interest_drift,
        user_focus=draw_focus(config, users),
    )
