"""Tests of the synthetic world: determinism, cache, knobs, event semantics and truth calibration."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from world_helpers import TINY, assert_worlds_equal, tiny

from ebr.data.schema import CLICK, IMPRESSION, NO_INTEREST, REPIN, SECONDS_PER_DAY, validate_events
from ebr.data.world import WorldConfig, generate_world

# ---- config -------------------------------------------------------------------------------------


def test_config_hash_is_digest_of_canonical_json_and_ints_equal_floats():
    expected = hashlib.sha256(
        json.dumps(dataclasses.asdict(TINY), sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    assert expected.startswith(TINY.hash())
    assert tiny(label_noise=0).hash() == tiny(label_noise=0.0).hash()
    assert tiny(seed=1).hash() != TINY.hash()
    assert WorldConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(ValueError, match="n_userz"):
        WorldConfig.from_dict({"n_userz": 3})


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"n_users": 0}, "n_users"),
        ({"near_duplicates": 1.5}, "near_duplicates"),
        ({"label_noise": -0.1}, "label_noise"),
        ({"n_pins": 2.5}, "n_pins"),
        ({"trend_strength": "high"}, "trend_strength"),
        ({"trend_lifetime_min_days": 90.0}, "trend_lifetime_max_days"),
        ({"impressions_per_session": 10_000}, "impressions_per_session"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(changes, field):
    with pytest.raises((ValueError, TypeError), match=field):
        tiny(**changes)


# ---- determinism and schema ---------------------------------------------------------------------


def test_same_seed_same_world_and_different_seed_different_world(world):
    assert_worlds_equal(world, generate_world(TINY))
    other = generate_world(tiny(seed=1))
    assert not world.events[["user", "pin"]].equals(other.events[["user", "pin"]])
    assert not np.array_equal(
        world.users.categorical["country"].values, other.users.categorical["country"].values
    )


def test_events_follow_the_schema(world):
    events = world.events
    validated = validate_events(events, TINY.n_users, TINY.n_pins, "test")
    assert validated.dtypes.to_dict() == events.dtypes.to_dict()
    assert np.all(np.diff(events["timestamp"].to_numpy()) >= 0)
    # within one second an impression precedes its click and a click its repin, in row order
    keyed = events.sort_values(["user", "pin", "timestamp"], kind="stable")
    same = (keyed[["user", "pin", "timestamp"]].diff() == 0).all(axis=1).to_numpy()[1:]
    assert np.all(np.diff(keyed["event"].to_numpy().astype(int))[same] >= 0)
    assert events["timestamp"].min() >= 0
    assert events["timestamp"].max() < TINY.n_days * SECONDS_PER_DAY
    assert set(np.unique(events["event"])) == {IMPRESSION, CLICK, REPIN}
    assert world.name == "synthetic"
    assert world.source == f"synthetic:{TINY.hash()}"
    assert world.truth is not None


def test_impressions_show_existing_pins_through_the_users_interests(world):
    imp = world.events[world.events["event"] == IMPRESSION]
    created = world.pins.meta["created_at"][imp["pin"].to_numpy()]
    assert np.all(created <= imp["timestamp"].to_numpy())
    interest = imp["interest"].to_numpy()
    explore = interest == NO_INTEREST
    # exploration share ~ exploration_rate (binomial sd ~ 0.0015 here)
    assert abs(explore.mean() - TINY.exploration_rate) < 0.01
    sourced = imp[~explore]
    n_int = TINY.n_interests
    for feature, column in (
        (world.users.categorical["interests"], "user"),
        (world.pins.categorical["interest"], "pin"),
    ):
        tagged = np.repeat(np.arange(feature.n_rows), feature.lengths()) * n_int + feature.values
        assert np.isin(sourced[column].to_numpy() * n_int + sourced["interest"].to_numpy(), tagged).all()


def owner_rows(later: pd.DataFrame, earlier: pd.DataFrame, tolerance: int) -> pd.Series:
    """For each row of `later`, the position in `earlier` of the latest row with the same user, pin and
    interest at the same or an earlier second, at most `tolerance` seconds before (NaN: none)."""
    keys = ["user", "pin", "interest"]
    rows = earlier.assign(row=np.arange(len(earlier)))[[*keys, "timestamp", "row"]]
    return pd.merge_asof(later, rows, on="timestamp", by=keys, direction="backward", tolerance=tolerance)[
        "row"
    ]


def test_every_repin_follows_a_click_and_every_click_an_impression(world):
    events = world.events
    by_type = {code: events[events["event"] == code] for code in (IMPRESSION, CLICK, REPIN)}
    for later, earlier in ((REPIN, CLICK), (CLICK, IMPRESSION)):
        owners = owner_rows(by_type[later], by_type[earlier], TINY.impression_gap_seconds)
        assert owners.notna().all()
        assert owners.is_unique  # one click per impression, one repin per click


def test_feature_tables_hold_the_documented_features(world):
    users, pins = world.users, world.pins
    assert set(users.categorical) == {"user_id", "country", "age_bucket", "gender", "interests"}
    assert set(users.dense) == {"activity"}
    assert set(pins.categorical) == {"pin_id", "interest", "category", "format", "image_signature"}
    assert set(pins.meta) == {"created_at", "coarse_signature", "fine_signature", "canonical_pin"}
    interests = users.categorical["interests"]
    rows = np.repeat(np.arange(users.n_rows), interests.lengths())
    np.testing.assert_allclose(np.bincount(rows, weights=interests.weights), 1.0, rtol=1e-5)
    # weights sorted descending within each row
    same_row = rows[1:] == rows[:-1]
    assert np.all(interests.weights[1:][same_row] <= interests.weights[:-1][same_row])
    assert len(np.unique(pins.meta["fine_signature"])) == pins.n_rows
    assert pins.categorical["image_signature"].cardinality == len(np.unique(pins.meta["coarse_signature"]))


# ---- the truth ----------------------------------------------------------------------------------


def test_truth_probabilities_match_the_empirical_click_and_repin_rates():
    data = generate_world(tiny(label_noise=0.0, n_users=1500))
    events = data.events
    imp = events[events["event"] == IMPRESSION]
    p_click, p_repin = data.truth.engagement_probabilities(
        imp["user"].to_numpy(), imp["pin"].to_numpy(), imp["timestamp"].to_numpy()
    )
    matched = owner_rows(events[events["event"] == CLICK], imp, TINY.impression_gap_seconds)
    assert matched.notna().all()
    click = np.zeros(len(imp), dtype=bool)
    click[matched.to_numpy(dtype=np.int64)] = True
    # calibration by decile of p_click: |observed - expected| within 4 binomial standard deviations
    bins = np.quantile(p_click, np.linspace(0, 1, 11))
    which = np.clip(np.searchsorted(bins, p_click, side="right") - 1, 0, 9)
    for b in range(10):
        in_bin = which == b
        expected, observed = p_click[in_bin].sum(), click[in_bin].sum()
        sd = np.sqrt((p_click[in_bin] * (1 - p_click[in_bin])).sum())
        assert abs(observed - expected) < 4 * sd + 1, (b, observed, expected)
    n_repins = (events["event"] == REPIN).sum()
    expected = p_repin[click].sum()
    assert abs(n_repins - expected) < 4 * np.sqrt((p_repin[click] * (1 - p_repin[click])).sum()) + 1


def test_label_noise_changes_the_click_rate_away_from_the_truth():
    data = generate_world(tiny(label_noise=3.0))
    imp = data.events[data.events["event"] == IMPRESSION]
    p_click, _ = data.truth.engagement_probabilities(
        imp["user"].to_numpy(), imp["pin"].to_numpy(), imp["timestamp"].to_numpy()
    )
    clicks = (data.events["event"] == CLICK).sum()
    # logit noise inflates a low click rate (E sigmoid(x + e) > sigmoid(x) for x << 0) by far more than chance
    assert clicks - p_click.sum() > 10 * np.sqrt((p_click * (1 - p_click)).sum())


def test_truth_broadcasts_and_scores_are_consistent(world):
    truth = world.truth
    users = np.array([[0], [5], [7]])
    pins = np.array([[1, 2, 3, 4], [0, 9, 8, 7], [5, 5, 6, 6]])
    t = 3 * SECONDS_PER_DAY
    p_click, p_repin = truth.engagement_probabilities(users, pins, t)
    score = truth.true_score(users, pins, t)
    assert p_click.shape == p_repin.shape == score.shape == (3, 4)
    flat_click, _ = truth.engagement_probabilities(np.repeat(users[:, 0], 4), pins.ravel(), np.full(12, t))
    np.testing.assert_allclose(p_click.ravel(), flat_click)
    exists = world.pins.meta["created_at"][pins] <= t
    np.testing.assert_allclose(p_click[exists], 1 / (1 + np.exp(-score[exists])), rtol=1e-9)
    assert np.all(p_click[~exists] == 0)
    assert np.all(p_repin <= 1)
    assert np.all(p_repin >= 0)
    with pytest.raises(IndexError, match="user"):
        truth.true_score(np.array([TINY.n_users]), np.array([0]), t)


# ---- knobs: 0 switches the phenomenon off -------------------------------------------------------


def test_near_duplicates_off_makes_every_signature_unique():
    pins = generate_world(tiny(near_duplicates=0.0)).pins
    assert len(np.unique(pins.meta["coarse_signature"])) == pins.n_rows
    np.testing.assert_array_equal(pins.meta["canonical_pin"], np.arange(pins.n_rows))


def test_near_duplicates_share_signature_features_and_taste(world):
    pins, truth = world.pins, world.truth
    sig = pins.meta["coarse_signature"]
    frame = pd.DataFrame({"sig": sig, "created": pins.meta["created_at"], "pin": np.arange(pins.n_rows)})
    sizes = frame.groupby("sig")["pin"].transform("size").to_numpy()
    assert abs((sizes > 1).mean() - TINY.near_duplicates) < 0.02
    # canonical = earliest created (ties: lowest id), by brute force
    first = frame.sort_values(["created", "pin"]).groupby("sig")["pin"].first()
    np.testing.assert_array_equal(pins.meta["canonical_pin"], first.loc[sig].to_numpy())
    canonical = pins.meta["canonical_pin"]
    for name in ("category", "format"):
        values = pins.categorical[name].values
        np.testing.assert_array_equal(values, values[canonical])
    gap = np.linalg.norm(truth.pin_vectors - truth.pin_vectors[canonical], axis=1)
    in_cluster = sizes > 1
    assert gap[in_cluster].max() < 0.5 * np.linalg.norm(truth.pin_vectors, axis=1).mean()
    assert np.all(gap[~in_cluster] == 0)


def test_multi_interest_off_gives_one_interest_per_user():
    interests = generate_world(tiny(multi_interest=0.0)).users.categorical["interests"]
    assert np.all(interests.lengths() == 1)
    np.testing.assert_array_equal(interests.weights, 1.0)
    on = generate_world(TINY).users.categorical["interests"]
    assert on.lengths().mean() > 2


def test_trend_off_makes_every_pin_exist_with_flat_popularity():
    data = generate_world(tiny(trend_strength=0.0))
    assert np.all(data.pins.meta["created_at"] <= 0)
    users, pins = np.arange(50)[:, None], np.arange(TINY.n_pins)[None, :]
    early = data.truth.true_score(users, pins, 0)
    late = data.truth.true_score(users, pins, TINY.n_days * SECONDS_PER_DAY - 1)
    np.testing.assert_array_equal(early, late)
    trending = generate_world(TINY)
    assert np.any(trending.pins.meta["created_at"] > 0)
    assert not np.array_equal(
        trending.truth.true_score(users, pins, SECONDS_PER_DAY),
        trending.truth.true_score(users, pins, 5 * SECONDS_PER_DAY),
    )


def _design(table, names, weighted=None) -> np.ndarray:
    """One-hot columns of single-valued features plus a (weighted) multi-hot of a CSR feature."""
    blocks = [np.eye(table.categorical[n].cardinality)[table.categorical[n].values] for n in names]
    if weighted is not None:
        feature = table.categorical[weighted]
        rows = np.repeat(np.arange(table.n_rows), feature.lengths())
        rank = np.arange(len(rows)) - feature.offsets[rows]  # position within the row (primary, second)
        for r in range(int(feature.lengths().max())):
            block = np.zeros((table.n_rows, feature.cardinality))
            sel = rank == r
            block[rows[sel], feature.values[sel]] = 1.0 if feature.weights is None else feature.weights[sel]
            blocks.append(block)
    return np.concatenate(blocks, axis=1)


def _linear_residual(design: np.ndarray, target: np.ndarray) -> float:
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    return float(np.linalg.norm(target - design @ coef) / np.linalg.norm(target - target.mean(0)))


@pytest.mark.parametrize(("knob", "additive"), [(0.0, True), (1.0, False)])
def test_feature_interaction_off_makes_taste_additive_in_features(knob, additive):
    data = generate_world(tiny(feature_interaction=knob, idiosyncrasy=0.0, n_users=1200))
    users = _design(data.users, ["country", "age_bucket", "gender"], weighted="interests")
    pins = _design(data.pins, ["category", "format"], weighted="interest")
    residuals = [
        _linear_residual(users, data.truth.user_vectors),
        _linear_residual(pins, data.truth.pin_vectors),
    ]
    if additive:
        assert max(residuals) < 1e-4
    else:
        assert min(residuals) > 0.2


def _twins(frame: pd.DataFrame) -> np.ndarray:
    """Two rows with identical values in every column."""
    groups = [rows for rows in frame.groupby(list(frame.columns)).indices.values() if len(rows) >= 2]
    assert groups, "no two rows with identical features; enlarge the test world"
    return np.asarray(groups[0][:2])


@pytest.mark.parametrize(("knob", "identical"), [(0.0, True), (1.0, False)])
def test_idiosyncrasy_off_makes_taste_a_function_of_features(knob, identical):
    data = generate_world(tiny(idiosyncrasy=knob, multi_interest=0.0, trend_strength=0.0))
    user_features = ("country", "age_bucket", "gender", "interests")
    users = _twins(pd.DataFrame({n: data.users.categorical[n].values for n in user_features}))
    tags = data.pins.categorical["interest"]
    pin_frame = pd.DataFrame({n: data.pins.categorical[n].values for n in ("category", "format")})
    pin_frame["tags"] = [str(t) for t in np.split(tags.values, tags.offsets[1:-1])]
    # pins of different signatures, so the twins are not simply near-duplicates of each other
    singletons = ~pd.Series(data.pins.meta["coarse_signature"]).duplicated(keep=False).to_numpy()
    pins = np.flatnonzero(singletons)[_twins(pin_frame[singletons].reset_index(drop=True))]
    score_users = data.truth.true_score(users[:, None], np.arange(TINY.n_pins)[None, :], 0)
    score_pins = data.truth.true_score(np.arange(TINY.n_users)[:, None], pins[None, :], 0)
    assert np.array_equal(score_users[0], score_users[1]) == identical
    assert np.array_equal(score_pins[:, 0], score_pins[:, 1]) == identical


# ---- cache --------------------------------------------------------------------------------------
