"""Observable attributes of the world's users and pins: demographics, interests, creation times, signatures.

Everything here is drawn with fixed array shapes from named random streams, so turning a knob changes
only what that knob governs (e.g. `near_duplicates=0` leaves every user and every pin feature unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ebr.data.csr import offsets_from_lengths
from ebr.data.schema import SECONDS_PER_DAY
from ebr.data.world.config import WorldConfig, stream

# Users are processed in blocks of this many rows where a (users x interests) matrix is needed.
_USER_BLOCK = 65_536


@dataclass(frozen=True)
class UserEntities:
    """Per-user attributes.

    Args:
        country: int64 (n_users,).
        age_bucket: int64 (n_users,).
        gender: int64 (n_users,).
        activity: float64 (n_users,) mean sessions per day.
        interest_offsets: int64 (n_users + 1,) CSR offsets of the interest lists.
        interest_values: int64 interest ids, each row sorted by weight descending.
        interest_weights: float32 weights aligned with `interest_values`; each row sums to 1.
    """

    country: np.ndarray
    age_bucket: np.ndarray
    gender: np.ndarray
    activity: np.ndarray
    interest_offsets: np.ndarray
    interest_values: np.ndarray
    interest_weights: np.ndarray

    @property
    def top_interest(self) -> np.ndarray:
        """Each user's highest-weight interest."""
        return self.interest_values[self.interest_offsets[:-1]]


@dataclass(frozen=True)
class PinEntities:
    """Per-pin attributes.

    Args:
        interest: int64 (n_pins,) primary interest tag.
        second_interest: int64 (n_pins,) second tag, -1 when the pin has none.
        category: int64 (n_pins,).
        format: int64 (n_pins,).
        created_at: int64 (n_pins,) creation time in seconds (negative: before day 0).
        lifetime_days: float64 (n_pins,) popularity lifetime.
        origin: int64 (n_pins,) the cluster's original pin for near-duplicates, the pin itself otherwise.
        cluster_size: int64 (n_pins,) size of the pin's near-duplicate cluster (1 for singletons).
        coarse_signature: int64 (n_pins,) in [0, n_signatures), shared by a near-duplicate cluster.
        fine_signature: int64 (n_pins,) unique per pin.
        canonical_pin: int64 (n_pins,) the earliest-created pin sharing the coarse signature.
        n_signatures: number of distinct coarse signatures.
    """

    interest: np.ndarray
    second_interest: np.ndarray
    category: np.ndarray
    format: np.ndarray
    created_at: np.ndarray
    lifetime_days: np.ndarray
    origin: np.ndarray
    cluster_size: np.ndarray
    coarse_signature: np.ndarray
    fine_signature: np.ndarray
    canonical_pin: np.ndarray
    n_signatures: int


def interest_popularity(config: WorldConfig) -> np.ndarray:
    """Zipf-like popularity of each interest (sums to 1); ranks are randomly assigned to interest ids."""
    rank = stream(config.seed, "interests").permutation(config.n_interests)
    weights = (rank + 1.0) ** -config.interest_zipf
    return weights / weights.sum()


def draw_users(config: WorldConfig) -> UserEntities:
    """Demographics, activity and weighted interests of every user.

    Args:
        config: the world config.
    """
    n = config.n_users
    rng = stream(config.seed, "users")
    country_p = 1.0 / np.arange(1, config.n_countries + 1)
    country = rng.choice(config.n_countries, size=n, p=country_p / country_p.sum())
    age_bucket = rng.integers(0, config.n_age_buckets, size=n)
    gender = rng.integers(0, config.n_genders, size=n)
    sigma = config.activity_spread
    # lognormal with mean exactly sessions_per_user_day in expectation
    activity = config.sessions_per_user_day * np.exp(sigma * rng.standard_normal(n) - sigma**2 / 2)
    offsets, values, weights = _draw_user_interests(config)
    return UserEntities(
        country=country.astype(np.int64),
        age_bucket=age_bucket.astype(np.int64),
        gender=gender.astype(np.int64),
        activity=activity,
        interest_offsets=offsets,
        interest_values=values,
        interest_weights=weights,
    )


def _draw_user_interests(config: WorldConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, n_int = config.n_users, config.n_interests
    cap = min(config.max_user_interests, n_int)
    rng = stream(config.seed, "user_interests")
    extra = rng.poisson(config.multi_interest * config.extra_interests_mean, size=n)
    counts = 1 + np.minimum(extra, cap - 1)
    raw_weights = rng.gamma(config.interest_weight_concentration, size=(n, cap))
    log_pop = np.log(interest_popularity(config))
    chosen = np.empty((n, cap), dtype=np.int64)
    for start in range(0, n, _USER_BLOCK):
        stop = min(start + _USER_BLOCK, n)
        # Gumbel top-k: `cap` interests without replacement, proportional to popularity, in draw order
        keys = log_pop + rng.gumbel(size=(stop - start, n_int))
        top = np.argpartition(-keys, cap - 1, axis=1)[:, :cap]
        order = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1)
        chosen[start:stop] = np.take_along_axis(top, order, axis=1)
    keep = np.arange(cap) < counts[:, None]
    weights = np.where(keep, raw_weights, 0.0)
    weights /= weights.sum(axis=1, keepdims=True)
    # the largest weight goes to the first-drawn (typically more popular) interest
    weights = -np.sort(-weights, axis=1)
    return offsets_from_lengths(counts), chosen[keep], weights[keep].astype(np.float32)


def draw_pins(config: WorldConfig) -> PinEntities:
    """Interest tags, categories, formats, creation times, lifetimes and near-duplicate signatures.

    Args:
        config: the world config.
    """
    n, n_int = config.n_pins, config.n_interests
    rng = stream(config.seed, "pins")
    popularity = interest_popularity(config)
    interest = rng.choice(n_int, size=n, p=popularity)
    second = rng.choice(n_int, size=n, p=popularity)
    # a second tag equal to the first is redrawn uniformly among the other interests
    clash = second == interest
    second = np.where(clash, (interest + 1 + rng.integers(0, max(n_int - 1, 1), size=n)) % n_int, second)
    has_second = (rng.random(n) < config.second_interest_prob) & (n_int > 1)
    second = np.where(has_second, second, -1)
    category = rng.integers(0, config.n_pin_categories, size=n)
    fmt = rng.integers(0, config.n_formats, size=n)

    life = stream(config.seed, "pin_life")
    horizon = config.n_days * SECONDS_PER_DAY
    history = config.history_days * SECONDS_PER_DAY
    position, is_new_draw = life.random(n), life.random(n)
    lo, hi = np.log(config.trend_lifetime_min_days), np.log(config.trend_lifetime_max_days)
    lifetime = np.exp(lo + (hi - lo) * life.random(n))
    is_new = (is_new_draw < config.new_pin_fraction) & (config.trend_strength > 0)
    # without trends every pin exists from the start; with them a fraction is created during the horizon
    created = np.where(is_new, np.floor(position * horizon), -np.floor(position * history)).astype(np.int64)

    origin, cluster_size, delay = _draw_clusters(config)
    member = origin != np.arange(n)
    interest, second, category, fmt = (a[origin] for a in (interest, second, category, fmt))
    lifetime = lifetime[origin]
    if config.trend_strength > 0:
        # a duplicate is a re-upload of the original image some days later
        created = np.where(member, created[origin] + delay, created)
    coarse, n_signatures = _coarse_signatures(config, origin)
    fine = stream(config.seed, "duplicates", 1).permutation(n).astype(np.int64)
    return PinEntities(
        interest=interest.astype(np.int64),
        second_interest=second.astype(np.int64),
        category=category.astype(np.int64),
        format=fmt.astype(np.int64),
        created_at=created,
        lifetime_days=lifetime,
        origin=origin,
        cluster_size=cluster_size,
        coarse_signature=coarse,
        fine_signature=fine,
        canonical_pin=canonical_pins(coarse, created),
        n_signatures=n_signatures,
    )


def _draw_clusters(config: WorldConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(origin, cluster_size, creation delay in seconds) of every pin."""
    n = config.n_pins
    rng = stream(config.seed, "duplicates")
    order = rng.permutation(n)
    # sizes 2..max: 1 + geometric with mean duplicate_cluster_mean, truncated at the maximum
    sizes = np.minimum(
        1 + rng.geometric(1.0 / (config.duplicate_cluster_mean - 1), size=n // 2 + 1),
        config.max_duplicate_cluster_size,
    )
    delay = np.floor(rng.exponential(config.duplicate_delay_days * SECONDS_PER_DAY, size=n)).astype(np.int64)
    origin = np.arange(n, dtype=np.int64)
    cluster_size = np.ones(n, dtype=np.int64)
    n_dup = round(config.near_duplicates * n)
    ends = np.cumsum(sizes)
    n_clusters = int(np.searchsorted(ends, n_dup, side="left")) + 1 if n_dup > 0 else 0
    if n_clusters == 0:
        return origin, cluster_size, delay
    sizes = sizes[:n_clusters].copy()
    sizes[-1] -= int(ends[n_clusters - 1]) - n_dup  # the last cluster takes the remainder
    if sizes[-1] < 2:  # a remainder of one pin is not a cluster
        sizes = sizes[:-1]
    if len(sizes) == 0:
        return origin, cluster_size, delay
    used = order[: int(sizes.sum())]
    starts = offsets_from_lengths(sizes)[:-1]
    first = used[np.repeat(starts, sizes)]
    origin[used] = first
    cluster_size[used] = np.repeat(sizes, sizes)
    return origin, cluster_size, delay


def _coarse_signatures(config: WorldConfig, origin: np.ndarray) -> tuple[np.ndarray, int]:
    """Coarse signature ids: one per cluster / singleton, randomly numbered so ids carry no order."""
    groups, group_of_pin = np.unique(origin, return_inverse=True)
    relabel = stream(config.seed, "duplicates", 2).permutation(len(groups)).astype(np.int64)
    return relabel[group_of_pin], len(groups)


def canonical_pins(coarse_signature: np.ndarray, created_at: np.ndarray) -> np.ndarray:
    """For each pin, the earliest-created pin with the same coarse signature (ties: lowest pin id).

    Args:
        coarse_signature: int64 (n_pins,) signature ids.
        created_at: int64 (n_pins,) creation times.
    """
    pins = np.arange(len(coarse_signature), dtype=np.int64)
    order = np.lexsort((pins, created_at, coarse_signature))
    sorted_sig = coarse_signature[order]
    is_first = np.ones(len(order), dtype=bool)
    is_first[1:] = sorted_sig[1:] != sorted_sig[:-1]
    group = np.cumsum(is_first) - 1
    canonical = np.empty_like(pins)
    canonical[order] = order[is_first][group]
    return canonical
