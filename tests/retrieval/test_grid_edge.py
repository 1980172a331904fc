"""A tuned baseline warns when its chosen value sits at the edge of its grid (ebr.retrieval.tuning):
a made-up validation curve that peaks at an edge gives the warning, one that peaks inside does not."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from test_baselines import fit, random_split

from ebr.evaluation.task import EvalTask
from ebr.retrieval.puresvd import PureSVD
from ebr.retrieval.tuning import GRID_EDGE_WARNING, grid_edge, tune_on_validation, tuning_metrics

GRID = (4, 8, 16, 32, 64)


class CurveModel:
    """Retrieves every relevant pin for the first `share` of the validation users and nothing (-1)
    for the others: its validation recall@50 is that share, exactly."""

    def __init__(self, share: float) -> None:
        self.share = share

    def retrieve(self, task: EvalTask, k: int) -> np.ndarray:
        rows = np.full((len(task.user_ids), k), -1, dtype=np.int64)
        hits = round(self.share * len(task.user_ids))
        for row in range(hits):
            pins = task.relevant.values[task.relevant.offsets[row] : task.relevant.offsets[row + 1]][:k]
            rows[row, : len(pins)] = pins
        return rows


def _tune(curve: dict[int, float], caplog: pytest.LogCaptureFixture) -> tuple[int, dict[str, float]]:
    split = random_split(4, 60, 120, density=0.05)
    corpus = np.unique(split.train["pin"].to_numpy())
    with caplog.at_level(logging.WARNING, logger="ebr.retrieval.tuning"):
        best, scores, _ = tune_on_validation(split, corpus, GRID, lambda v: CurveModel(curve[v]), name="rank")
    n_users = split.val["user"].nunique()
    # the made-up curve is what validation measured (shares of whole users, so rounded to 1/n)
    for value, share in curve.items():
        assert scores[str(value)] == pytest.approx(round(share * n_users) / n_users)
    return best, scores


@pytest.mark.parametrize(("peak", "edge"), [(4, "smallest"), (64, "largest")])
def test_a_curve_peaking_at_the_grid_edge_warns(peak: int, edge: str, caplog) -> None:
    curve = {v: 0.9 - 0.1 * abs(np.log2(v) - np.log2(peak)) for v in GRID}
    best, scores = _tune(curve, caplog)
    assert best == peak
    lines = [r.getMessage() for r in caplog.records if "grid" in r.getMessage()]
    assert len(lines) == 1, "one line"
    for needle in (f"rank={peak}", edge, "widen model.grid"):
        assert needle in lines[0], needle
    metrics = tuning_metrics("rank", best, scores)
    assert metrics[GRID_EDGE_WARNING.format(name="rank")] == 1.0
    assert GRID_EDGE_WARNING.format(name="rank") == "warnings/grid_edge[rank]"


def test_a_curve_peaking_inside_the_grid_does_not_warn(caplog) -> None:
    curve = {4: 0.2, 8: 0.5, 16: 0.8, 32: 0.6, 64: 0.3}
    best, scores = _tune(curve, caplog)
    assert best == 16
    assert not [r for r in caplog.records if "grid" in r.getMessage()]
    assert not [k for k in tuning_metrics("rank", best, scores) if k.startswith("warnings/")]


def test_grid_edge_rules() -> None:
    assert grid_edge(200, [1000, 200, 500]) == "smallest", "by value, not by position"
    assert grid_edge(1000.0, ["200", "500", "1000"]) == "largest"
    assert grid_edge(500, [200, 500, 1000]) is None
    assert grid_edge(7, [7]) is None, "a grid of one value has no inside to leave"
    assert tuning_metrics("rank", 64, {}) == {"tune/rank": 64.0}, "an untuned value warns of nothing"


def test_a_baseline_job_records_the_warning(caplog) -> None:
    n_users, n_pins = 60, 120
    split = random_split(4, n_users, n_pins, density=0.05)
    model = PureSVD(tune=True, grid=[2, 3])
    with caplog.at_level(logging.WARNING, logger="ebr.retrieval.tuning"):
        fit(model, split, n_users, n_pins)
    metrics = model.own_metrics()
    assert ("warnings/grid_edge[rank]" in metrics) == (grid_edge(model.rank, [2, 3]) is not None)
    assert any("PureSVD: chose rank=" in r.getMessage() for r in caplog.records)
