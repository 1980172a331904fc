"""Score terms: the one engagement counter, the popularity prior, and the folded-in coordinates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ebr.data.schema import CLICK, IMPRESSION, REPIN, DataValidationError, Split
from ebr.serving.index import ItemIndex
from ebr.serving.score_terms import PopularityPrior, ScoreColumns, TrainingEngagements

CONF = Path(__file__).resolve().parents[2] / "conf"


def _split(train: pd.DataFrame) -> Split:
    later = train.iloc[:0]
    return Split(pretrain=later, train=train, val=later, test=later, reference_time=10**6)


def _train(rng: np.random.Generator, n: int = 400) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user": rng.integers(0, 30, n),
            "pin": rng.integers(0, 25, n),
            "timestamp": np.arange(n),
            "event": rng.choice([IMPRESSION, CLICK, REPIN], n),
            "interest": -1,
        }
    )


def test_counts_are_clicks_and_repins_of_corpus_pins() -> None:
    train = _train(np.random.default_rng(0))
    corpus = np.array([0, 3, 4, 11, 24, 99])  # 99 is never engaged
    engagements = TrainingEngagements.from_split(_split(train))
    engaged = train[train["event"] != IMPRESSION]
    expected = [int((engaged["pin"] == pin).sum()) for pin in corpus]
    assert engagements.counts(corpus).tolist() == expected
    assert len(engagements.timestamps) == len(engaged)
    got = PopularityPrior(weight=0.1).pin_values(engagements, corpus)
    np.testing.assert_allclose(got, np.log1p(expected), rtol=1e-6)
    assert got.dtype == np.float32
    with pytest.raises(DataValidationError, match=r"split\.train: missing column\(s\) \['event'\]"):
        TrainingEngagements.from_split(_split(train.drop(columns="event")))


def test_columns_add_weighted_terms_to_every_score() -> None:
    rng = np.random.default_rng(1)
    users = rng.standard_normal((7, 5)).astype(np.float32)
    pins = rng.standard_normal((11, 5)).astype(np.float32)
    train = _train(rng)
    corpus = np.arange(11) * 2
    engagements = TrainingEngagements.from_split(_split(train))
    columns = ScoreColumns.build([PopularityPrior(0.3), PopularityPrior(0.0)], engagements, corpus)
    assert columns.width == 1  # a zero weight is switched off, not served as a zero column
    log_counts = np.log1p(engagements.counts(corpus))
    expected = users.astype(np.float64) @ pins.T.astype(np.float64) + 0.3 * log_counts[None, :]
    served = columns.extend_users(users).astype(np.float64) @ columns.extend_pins(pins).T.astype(np.float64)
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-5)
    none = ScoreColumns.build([PopularityPrior(0.0)], engagements, corpus)
    assert none.extend_users(users) is users
    assert none.extend_pins(pins) is pins


@pytest.mark.parametrize("bad", [-0.5, float("nan"), True, "0.1"])
def test_prior_rejects_bad_weights_naming_the_key(bad) -> None:
    with pytest.raises(ValueError, match=r"serving\.score_terms\.popularity_prior\.weight"):
        PopularityPrior(weight=bad)


@pytest.mark.parametrize("option", ["flat", "hnsw"])
def test_index_serves_the_prior_ranking(option: str) -> None:
    rng = np.random.default_rng(2)
    users = rng.standard_normal((20, 8)).astype(np.float32)
    pins = rng.standard_normal((300, 8)).astype(np.float32)
    users /= np.linalg.norm(users, axis=1, keepdims=True)
    pins /= np.linalg.norm(pins, axis=1, keepdims=True)
    log_counts = np.log1p(rng.integers(0, 1000, 300)).astype(np.float32)
    ids = np.arange(1000, 1300)
    columns = ScoreColumns(np.array([0.2]), log_counts[:, None])
    config = instantiate(OmegaConf.load(CONF / "index" / f"{option}.yaml"))
    retrieved, _ = ItemIndex(columns.extend_pins(pins), ids, config).search(columns.extend_users(users), 10)
    brute = np.argsort(-(users.astype(np.float64) @ pins.T + 0.2 * log_counts), axis=1, kind="stable")[:, :10]
    # HNSW is approximate: require near-total agreement rather than equality
    agreement = np.mean([len(set(r) & set(ids[b])) / 10 for r, b in zip(retrieved, brute, strict=True)])
    assert agreement == 1.0 if option == "flat" else agreement >= 0.95
    # without the prior the ranking differs: the test would catch a prior that is silently dropped
    plain = np.argsort(-(users.astype(np.float64) @ pins.T), axis=1, kind="stable")[:, :10]
    assert not np.array_equal(ids[plain], ids[brute])
