"""The served popularity prior: counts, the folded-in coordinate, and search through the index."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ebr.data.schema import CLICK, IMPRESSION, REPIN, DataValidationError, Split
from ebr.serving.index import IndexConfig, ItemIndex
from ebr.serving.popularity_prior import pin_log_engagements, with_popularity_prior


def _split(train: pd.DataFrame) -> Split:
    later = train.iloc[:0]
    return Split(pretrain=later, train=train, val=later, test=later, reference_time=10**6)


def test_pin_log_engagements_counts_clicks_and_repins_of_corpus_pins() -> None:
    rng = np.random.default_rng(0)
    n = 400
    train = pd.DataFrame(
        {
            "user": rng.integers(0, 30, n),
            "pin": rng.integers(0, 25, n),
            "timestamp": np.arange(n),
            "event": rng.choice([IMPRESSION, CLICK, REPIN], n),
            "interest": -1,
        }
    )
    corpus = np.array([0, 3, 4, 11, 24, 99])  # 99 is never engaged
    got = pin_log_engagements(_split(train), corpus)
    engaged = train[train["event"] != IMPRESSION]
    expected = [np.log(1 + int((engaged["pin"] == pin).sum())) for pin in corpus]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got[-1] == 0.0
    with pytest.raises(DataValidationError, match=r"split\.train: missing column\(s\) \['event'\]"):
        pin_log_engagements(_split(train.drop(columns="event")), corpus)


def test_prior_coordinate_adds_weighted_log_count_to_every_score() -> None:
    rng = np.random.default_rng(1)
    users, pins = rng.standard_normal((7, 5)), rng.standard_normal((11, 5))
    log_counts = np.log1p(rng.integers(0, 50, 11)).astype(np.float64)
    aug_users, aug_pins = with_popularity_prior(users, pins, log_counts, 0.3)
    expected = users @ pins.T + 0.3 * log_counts[None, :]
    np.testing.assert_allclose(aug_users @ aug_pins.T, expected, rtol=1e-12)
    same_users, same_pins = with_popularity_prior(users, pins, log_counts, 0.0)
    assert same_users is users
    assert same_pins is pins
    with pytest.raises(ValueError, match=r"popularity_prior must be a finite number >= 0"):
        with_popularity_prior(users, pins, log_counts, -0.1)
    with pytest.raises(ValueError, match="pin_log_counts has 3 rows for 11 pin embeddings"):
        with_popularity_prior(users, pins, log_counts[:3], 0.1)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_index_serves_the_prior_ranking(kind: str) -> None:
    rng = np.random.default_rng(2)
    users = rng.standard_normal((20, 8)).astype(np.float32)
    pins = rng.standard_normal((300, 8)).astype(np.float32)
    users /= np.linalg.norm(users, axis=1, keepdims=True)
    pins /= np.linalg.norm(pins, axis=1, keepdims=True)
    log_counts = np.log1p(rng.integers(0, 1000, 300)).astype(np.float32)
    ids = np.arange(1000, 1300)
    hnsw = {"build_params": {"hnsw": {"efConstruction": 200}}, "search_params": {"efSearch": 300}}
    config = IndexConfig() if kind == "flat" else IndexConfig(factory="HNSW32,Flat", **hnsw)
    aug_users, aug_pins = with_popularity_prior(users, pins, log_counts, 0.2)
    retrieved, _ = ItemIndex(aug_pins, ids, config).search(aug_users, 10)
    brute = np.argsort(-(users.astype(np.float64) @ pins.T + 0.2 * log_counts), axis=1, kind="stable")[:, :10]
    # HNSW is approximate: require near-total agreement rather than equality
    agreement = np.mean([len(set(r) & set(ids[b])) / 10 for r, b in zip(retrieved, brute, strict=True)])
    assert agreement == 1.0 if kind == "flat" else agreement >= 0.95
    # without the prior the ranking differs: the test would catch a prior that is silently dropped
    plain = np.argsort(-(users.astype(np.float64) @ pins.T), axis=1, kind="stable")[:, :10]
    assert not np.array_equal(ids[plain], ids[brute])
