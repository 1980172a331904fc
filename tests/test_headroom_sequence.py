"""The headroom study's sequence rows (ebr.diagnostics.headroom.sequence): the history subsets and
the weight estimate against hand computations, and the rows' plumbing on a tiny world, whose
control (interest_drift 0) leaves the true score and the long-run mix identical."""

from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from ebr.config import register_schemas
from ebr.data.world import WorldConfig, generate_world
from ebr.diagnostics.headroom import study
from ebr.diagnostics.headroom.sequence import PRIOR, RECENT_K, estimated_weights, subset

REPO = Path(__file__).resolve().parent.parent
OVERRIDES = ["data=synthetic_tiny", "data.config.n_users=600", "data.config.n_pins=400"]


def test_recent_and_random_subsets_keep_k_per_user() -> None:
    users = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3, 3])
    np.testing.assert_array_equal(subset(users, 2, "recent"), [0, 1, 1, 1, 1, 1, 0, 0, 1, 1])
    assert subset(users, None, "random").all()
    for seed in range(5):
        keep = subset(users, 2, "random", seed)
        np.testing.assert_array_equal(np.bincount(users[keep], minlength=4), [2, 2, 1, 2])
    picked = {tuple(np.flatnonzero(subset(users, 2, "random", s) & (users == 3))) for s in range(20)}
    assert len(picked) > 2  # not always the same rows
    with pytest.raises(ValueError, match="recent"):
        subset(users, 2, "oldest")


def test_estimated_weights_by_hand() -> None:
    truth = generate_world(WorldConfig(n_users=50, n_pins=80, n_interests=4, n_days=2)).truth
    user = int(np.flatnonzero(np.diff(truth.user_interest_offsets) >= 2)[0])
    lo, hi = truth.user_interest_offsets[user], truth.user_interest_offsets[user + 1]
    interests = truth.user_interest_values[lo:hi].tolist()
    pins = np.array([p for p in range(80) if truth.pin_interests[p, 0] == interests[0]][:3])
    weights = estimated_weights(truth, np.full(len(pins), user), pins)
    counts = np.zeros(hi - lo)
    for pin in pins:  # the pin's tag the user weighs most in the long run
        tags = [t for t in truth.pin_interests[pin] if t in interests]
        best = max(tags, key=lambda t: truth.user_interest_weights[lo + interests.index(t)])
        counts[interests.index(best)] += 1
    want = counts + PRIOR * truth.user_interest_weights[lo:hi]
    np.testing.assert_allclose(weights[lo:hi], want / want.sum(), rtol=1e-6)
    # users without engagements keep their profile weights
    other = np.arange(len(weights)) < lo
    other |= np.arange(len(weights)) >= hi
    np.testing.assert_allclose(weights[other], truth.user_interest_weights[other], rtol=1e-6)


def test_sequence_rows_on_a_tiny_world() -> None:
    register_schemas()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = compose("train", overrides=OVERRIDES)
    base = hydra.utils.instantiate(cfg.data.config)
    results = study.measure(["sequence", "sequence_bag"], [0], base, cfg, None, sessions=1)
    names = {"true score", "long-run mix", f"recent {RECENT_K}", f"random {RECENT_K}", "bag"}
    for row in ("sequence", "sequence_bag"):
        for state in ("on", "off"):
            variants = results[row][state][0]
            assert set(variants) == names
            assert all(0 <= m["recall@100"] <= 1 for m in variants.values())
    on, off = results["sequence"]["on"][0], results["sequence"]["off"][0]
    # knob off: the truth has no current state beyond the profile; on: knowing it changes the ranking
    assert off["true score"] == off["long-run mix"]
    assert on["true score"]["recall@100"] != on["long-run mix"]["recall@100"]
    assert study.ROWS["sequence"].on_value(base) == study.DRIFT_ON
