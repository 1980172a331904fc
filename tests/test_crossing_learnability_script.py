"""The crossing learnability regression (ebr.diagnostics.learnability, scripts/crossing_learnability.py
its command line): its R², the recovered interaction part, and a tiny run."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import r2_score

from ebr.data.world import WorldConfig
from ebr.data.world.entities import draw_pins, draw_users
from ebr.data.world.taste import build_truth
from ebr.diagnostics.learnability import held_out_r2, interaction_part, user_interaction_forms

REPO = Path(__file__).resolve().parent.parent
TINY_WORLD = ["data.config.n_users=300", "data.config.n_pins=200"]


def _run_script(*argv: str) -> str:
    command = [sys.executable, str(REPO / "scripts" / "crossing_learnability.py"), *argv, *TINY_WORLD]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def test_held_out_r2_is_variance_weighted_r2() -> None:
    rng = np.random.default_rng(0)
    target = rng.standard_normal((50, 4)) * [1.0, 2.0, 0.5, 3.0]
    predicted = target + rng.standard_normal((50, 4))
    expected = r2_score(target, predicted, multioutput="variance_weighted")
    assert held_out_r2(predicted, target) == pytest.approx(expected, rel=1e-10)


def test_interaction_part_is_the_knobs_term_of_the_mix() -> None:
    """c * m / rms(m) has table-wide rms c; with the knob off the difference vanishes."""
    world = WorldConfig(n_users=800, n_pins=400, n_interests=8, n_days=5, interaction_ratio=0.9)
    users, pins = draw_users(world), draw_pins(world)
    off_world = dataclasses.replace(world, feature_interaction=0.0)
    on, off = build_truth(world, users, pins), build_truth(off_world, users, pins)
    part = interaction_part(world, on.user_vectors.astype(np.float64), off.user_vectors)
    rms = np.sqrt(np.mean(np.sum(part**2, axis=1)))
    assert rms == pytest.approx(0.9, rel=1e-4)
    zero = interaction_part(off_world, off.pin_vectors, off.pin_vectors, users=False)
    np.testing.assert_allclose(zero, 0.0, atol=1e-6)


def test_tiny_run_prints_every_side_and_target() -> None:
    out = _run_script("--seeds", "0", "--epochs", "1")
    rows = [line for line in out.splitlines() if line.startswith(("| user", "| pin"))]
    assert [row.split(" | ")[:2] for row in rows] == [
        ["| user", "interaction"],
        ["| user", "knob off"],
        ["| pin", "interaction"],
        ["| pin", "knob off"],
    ]
    for row in rows:
        assert len(row.strip("| ").split(" | ")) == 2 + 4  # side, target, four crossings


def test_interaction_forms_match_a_per_user_reference() -> None:
    world = WorldConfig(n_users=300, n_pins=100, n_interests=8, n_days=5)
    users = draw_users(world)
    forms = user_interaction_forms(world, users, seed=3)
    rng = np.random.default_rng(3)
    country, _age, interest = (
        rng.standard_normal((n, world.latent_dim)) for n in (world.n_countries, world.n_age_buckets, 8)
    )
    two_way = np.zeros((world.n_users, world.latent_dim))
    for u in range(world.n_users):
        start, stop = users.interest_offsets[u], users.interest_offsets[u + 1]
        pooled = sum(
            w * interest[i]
            for w, i in zip(
                users.interest_weights[start:stop], users.interest_values[start:stop], strict=True
            )
        )
        two_way[u] = country[users.country[u]] * pooled
    two_way /= np.sqrt(np.mean(np.sum(two_way**2, axis=1)))
    np.testing.assert_allclose(forms["country x interests"], two_way, rtol=1e-6, atol=1e-9)
    for form in forms.values():
        assert np.sqrt(np.mean(np.sum(form**2, axis=1))) == pytest.approx(1.0)


def test_tiny_forms_run_prints_every_form() -> None:
    out = _run_script("--forms", "--seeds", "0", "--epochs", "1")
    rows = [line for line in out.splitlines() if line.startswith("| country")]
    assert len(rows) == 4
    for row in rows:
        cells = row.strip("| ").split(" | ")
        assert len(cells) == 1 + 4
        assert all(-10.0 < float(cell) <= 1.0 for cell in cells[1:])
