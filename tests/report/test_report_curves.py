"""`curves.png` and its data: per arm, the per-epoch mean and std over seeds of `history.json`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ebr.report.cli import main
from ebr.report.curves import CURVES_PNG, arm_curves
from ebr.report.sweep import load_sweep

HISTORIES = {
    ("mlp", 0): {"epoch": [1, 2, 3], "train/loss": [5.0, 4.0, 3.0], "val/loss": [6.0, 5.5, 5.8]},
    ("mlp", 1): {"epoch": [1, 2, 3], "train/loss": [5.2, 4.4, 3.4], "val/loss": [6.2, 5.7, 6.0]},
    # a run stopped one epoch early: the arm's curve keeps the epochs every seed reached
    ("masknet", 0): {"epoch": [1, 2], "train/loss": [5.1, 4.6], "val/loss": [6.1, 5.4]},
    ("masknet", 1): {"epoch": [1, 2, 3], "train/loss": [5.3, 4.8, 4.1], "val/loss": [6.3, 5.6, 5.2]},
}


def _sweep_with_histories(make_sweep, histories=HISTORIES):
    values = {cell: {"recall@100": 0.5 + 0.01 * cell[1]} for cell in histories}
    sweep_dir = make_sweep(values, report={"baseline": {"model/crossing": "mlp"}, "metrics": ["recall@100"]})
    sweep = load_sweep(sweep_dir)
    for (arm, seed), history in histories.items():
        job = next(j for j in sweep.jobs if j.arm.values.get("model/crossing") == arm and j.seed == str(seed))
        (job.path / "history.json").write_text(json.dumps(history))
    return sweep_dir


def test_arm_curves_are_the_seed_mean_and_std_over_common_epochs(make_sweep) -> None:
    curves = arm_curves(load_sweep(_sweep_with_histories(make_sweep)))
    by_short = {label.split("=")[-1]: value for label, value in curves.items()}
    mlp = by_short["mlp"]["train/loss"]
    np.testing.assert_allclose(mlp.mean, [5.1, 4.2, 3.2])
    np.testing.assert_allclose(mlp.std, np.std([[5.0, 4.0, 3.0], [5.2, 4.4, 3.4]], axis=0, ddof=1))
    assert mlp.n == 2
    masknet = by_short["masknet"]["val/loss"]
    np.testing.assert_array_equal(masknet.epochs, [1, 2])
    np.testing.assert_allclose(masknet.mean, [6.2, 5.5])


def test_report_writes_curves_only_when_runs_kept_history(make_sweep) -> None:
    with_history = _sweep_with_histories(make_sweep)
    assert main([str(with_history)]) == 0
    assert (with_history / CURVES_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    without = make_sweep({("mlp", 0): {"recall@100": 0.5}, ("masknet", 0): {"recall@100": 0.6}})
    assert main([str(without)]) == 0
    assert not (without / CURVES_PNG).exists()


def test_a_damaged_history_is_named(make_sweep, capsys) -> None:
    sweep_dir = _sweep_with_histories(make_sweep, {("mlp", 0): HISTORIES[("mlp", 0)]})
    damaged = next(sweep_dir.glob("*/history.json"))
    damaged.write_text('{"train/loss": [1.0,')
    assert main([str(sweep_dir)]) != 0
    assert str(damaged) in capsys.readouterr().err
    with pytest.raises(ValueError, match="history"):
        arm_curves(load_sweep(sweep_dir))
