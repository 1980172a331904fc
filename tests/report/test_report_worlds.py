"""Worlds as a replication axis: the hierarchical bootstrap, per-world deltas and k of n worlds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import t as student_t
from world_fixtures import factor_values, world_sweep

from ebr.report.cli import main as report_main
from ebr.report.hierarchy import hierarchical_bootstrap, pooled_delta
from ebr.report.sweep import load_sweep


def _loop_bootstrap(groups: list[list[float]], n_boot: int, seed: int) -> tuple[float, float]:
    """The two-level bootstrap written as plain loops over the same random draws."""
    rng = np.random.default_rng(seed)
    n_groups, widest = len(groups), max(len(g) for g in groups)
    worlds = rng.integers(0, n_groups, size=(n_boot, n_groups))
    uniform = rng.random((n_boot, n_groups, widest))
    stats = []
    for b in range(n_boot):
        means = []
        for slot in range(n_groups):
            group = groups[worlds[b, slot]]
            picks = [group[int(uniform[b, slot, j] * len(group))] for j in range(len(group))]
            means.append(sum(picks) / len(picks))
        stats.append(sum(means) / n_groups)
    low, high = np.quantile(stats, [0.025, 0.975])
    return float(low), float(high)


def test_hierarchical_bootstrap_equals_loop_reimplementation() -> None:
    groups = [[0.01, 0.03, 0.02], [0.05, -0.01], [0.00, 0.02, 0.04, 0.01]]
    got = hierarchical_bootstrap([np.array(g) for g in groups], 400, 7)
    assert got == pytest.approx(_loop_bootstrap(groups, 400, 7), abs=1e-12)


def test_one_seed_per_world_is_the_bootstrap_over_worlds() -> None:
    values = np.array([0.01, 0.04, -0.02, 0.03, 0.05])
    rng = np.random.default_rng(3)
    means = values[rng.integers(0, 5, size=(2000, 5))].mean(axis=1)
    expected = tuple(np.quantile(means, [0.025, 0.975]))
    got = hierarchical_bootstrap([np.array([v]) for v in values], 2000, 3)
    assert got == pytest.approx(expected, abs=1e-12)
    # no spread within a world: the same interval, the seeds add nothing
    flat = hierarchical_bootstrap([np.full(3, v) for v in values], 2000, 3)
    assert flat == pytest.approx(expected, abs=1e-12)


def test_between_world_spread_widens_the_interval() -> None:
    groups = [np.array([m - 0.001, m, m + 0.001]) for m in (0.01, 0.05, 0.09)]
    low, high = hierarchical_bootstrap(groups, 10_000, 0)
    pooled = np.concatenate(groups)
    half = student_t.ppf(0.975, len(pooled) - 1) * pooled.std(ddof=1) / np.sqrt(len(pooled))
    assert high - low > 2 * half  # the naive t over 9 pairs treats the worlds as seeds
    assert hierarchical_bootstrap(groups[:1], 100, 0) is None  # one world: no interval


def test_pooled_delta_per_world_and_agreement() -> None:
    per_pair = {"0/0": 0.02, "0/1": 0.03, "0/2": 0.025, "1/0": 0.01, "1/1": -0.01, "1/2": 0.0}
    world_of = {key: key.split("/")[0] for key in per_pair}
    pooled = pooled_delta(per_pair, world_of, ["0", "1"], 500, 0)
    assert pooled.mean == pytest.approx((0.025 + 0.0) / 2)
    first, second = pooled.worlds
    d = np.array([0.02, 0.03, 0.025])
    half = student_t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
    assert first.t_ci == pytest.approx((d.mean() - half, d.mean() + half))
    assert first.agrees
    assert not second.agrees
    assert pooled.n_agree == 1
    means = np.array([0.025, 0.0])
    half = student_t.ppf(0.975, 1) * means.std(ddof=1) / np.sqrt(2)
    assert pooled.world_t_ci == pytest.approx((means.mean() - half, means.mean() + half))


FACTORS = {0: [1.02, 1.03, 1.025], 1: [1.01, 1.02, 1.015], 2: [0.99, 1.01, 1.0]}


def test_report_over_worlds(tmp_path) -> None:
    sweep = world_sweep(tmp_path, "crossing", factor_values(FACTORS))
    loaded = load_sweep(sweep)
    assert loaded.arms == ["model/crossing=mlp", "model/crossing=masknet"]  # the world is no arm
    assert loaded.worlds == ["0", "1", "2"]
    assert "2/1" in loaded.seeds
    assert report_main([str(sweep), "--bootstrap", "1000"]) == 0
    report = json.loads((sweep / "report.json").read_text())
    assert report["worlds"] == ["0", "1", "2"]
    delta = report["results"]["sim/repins"]["model/crossing=masknet"]["delta"]
    assert delta["n_pairs"] == 9
    pooled = delta["pooled"]
    world_means = [np.mean(np.array(f) - 1) for f in FACTORS.values()]
    assert pooled["mean"] == pytest.approx(np.mean(world_means))
    assert [w["world"] for w in pooled["worlds"]] == ["0", "1", "2"]
    assert [w["agrees"] for w in pooled["worlds"]] == [True, True, False]
    groups = [np.array(f) - 1 for f in FACTORS.values()]
    assert pooled["ci"] == pytest.approx(list(hierarchical_bootstrap(groups, 1000, 0)))
    claim = report["claims"][0]
    assert claim["arm"] == "model/crossing=masknet"
    assert claim["baseline"] == "model/crossing=mlp"
    assert claim["delta"]["pooled"]["mean"] == pytest.approx(pooled["mean"])
    text = (sweep / "report.md").read_text()
    assert "## Pooled over worlds" in text
    # worlds 0 and 1 agree (interval above 0); world 2's mean is about 0, its sign whatever rounding gives
    same_sign = sum(w["mean"] > 0 for w in pooled["worlds"])
    assert f"2 of 3 (sign: {same_sign} of 3)" in text
    assert "hierarchical" in text
    assert "## Paper claims" in text


def test_one_world_sweep_has_no_world_keys(tmp_path) -> None:
    values = {key: v for key, v in factor_values(FACTORS).items() if key[1] == 0}
    sweep = world_sweep(tmp_path, "crossing", values)
    assert load_sweep(sweep).seeds == ["0", "1", "2"]
    assert report_main([str(sweep), "--bootstrap", "100"]) == 0
    report = json.loads((sweep / "report.json").read_text())
    assert "worlds" not in report
    assert "pooled" not in report["results"]["sim/repins"]["model/crossing=masknet"]["delta"]
    assert "Pooled over worlds" not in (sweep / "report.md").read_text()


def test_bad_claim_names_file_and_key(tmp_path, capsys) -> None:
    from world_fixtures import WORLD_REPORT

    bad = {**WORLD_REPORT, "claims": [{**WORLD_REPORT["claims"][0], "direction": "up"}]}
    sweep = world_sweep(tmp_path, "crossing", factor_values({0: [1.0, 1.0]}), report=bad)
    assert report_main([str(sweep)]) == 2
    err = capsys.readouterr().err
    assert "conf/experiment/crossing.yaml" in err
    assert "report.claims[0].direction" in err


def test_missing_run_of_a_world_is_named_by_world_and_seed(tmp_path) -> None:
    values = factor_values(FACTORS)
    del values[("masknet", 2, 1)]
    sweep = world_sweep(tmp_path, "crossing", values)
    assert report_main([str(sweep), "--bootstrap", "200"]) == 4  # incomplete
    report = json.loads((sweep / "report.json").read_text())
    assert [(p["arm"], p["seed"]) for p in report["missing"]] == [("model/crossing=masknet", "2/1")]
    world_two = report["results"]["sim/repins"]["model/crossing=masknet"]["delta"]["pooled"]["worlds"][2]
    assert world_two["n_pairs"] == 2
