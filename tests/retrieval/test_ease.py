"""EASE^R against dense numpy computations on tiny matrices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from test_baselines import TUNING_PINS, TUNING_USERS, dense_train, fit, random_split, tune_on_test_variants

from ebr.evaluation.task import build_eval_task
from ebr.retrieval.ease import EASE, closed_form
from ebr.retrieval.protocol import Retriever
from ebr.serving.corpus import training_window_corpus

REPO = Path(__file__).resolve().parents[2]


def dense_ease(x: np.ndarray, l2: float) -> np.ndarray:
    """Steck's closed form on the full user x pin matrix, every pin included."""
    p = np.linalg.inv(x.T @ x + l2 * np.eye(x.shape[1]))
    b = np.eye(x.shape[1]) - p @ np.diag(1.0 / np.diag(p))
    return x @ b


def ridge_columns(x: np.ndarray, l2: float) -> np.ndarray:
    """B column by column as the ridge regression of pin j on the other pins (B_jj = 0 by construction)."""
    n = x.shape[1]
    b = np.zeros((n, n))
    for j in range(n):
        others = [i for i in range(n) if i != j]
        a = x[:, others]
        b[others, j] = np.linalg.solve(a.T @ a + l2 * np.eye(n - 1), a.T @ x[:, j])
    return b


@pytest.mark.parametrize("l2", [0.5, 3.0, 40.0])
def test_scores_equal_dense_closed_form(l2: float) -> None:
    split = random_split(0, n_users=12, n_pins=9, density=0.4)
    # two pins without a train engagement: the matrix is built without them, the scores are not
    n_pins = 11
    model = EASE(l2=l2)
    fit(model, split, 12, n_pins)
    x = dense_train(split, 12, n_pins)
    assert x[:, 9:].sum() == 0
    np.testing.assert_allclose(model.score(np.arange(12)), dense_ease(x, l2), atol=1e-10)
    np.testing.assert_allclose(model.score(np.arange(12)), x @ ridge_columns(x, l2), atol=1e-10)
    assert np.all(model.score(np.arange(12))[:, 9:] == 0)


def test_closed_form_has_a_zero_diagonal_and_leaves_the_gram_matrix() -> None:
    rng = np.random.default_rng(1)
    x = (rng.random((20, 6)) < 0.4).astype(float)
    gram = x.T @ x
    before = gram.copy()
    b = closed_form(gram, 2.0)
    assert np.all(np.diag(b) == 0)
    np.testing.assert_array_equal(gram, before)
    np.testing.assert_allclose(b, ridge_columns(x, 2.0), atol=1e-12)


def test_tuning_never_reads_test_and_picks_the_best_validation_lambda() -> None:
    n_users, n_pins = TUNING_USERS, TUNING_PINS
    grid = [0.1, 5, 50, 2000]
    split, models = tune_on_test_variants(lambda: EASE(tune=True, grid=grid))
    chosen = [model.l2 for model in models]
    validation = [model.validation for model in models]
    model = models[-1]
    assert chosen[0] == chosen[1] == chosen[2]
    assert validation[0] == validation[1] == validation[2]
    assert list(validation[0]) == ["0.1", "5", "50", "2000"]
    assert len(set(validation[0].values())) > 1  # the grid values are told apart
    # validation recall@50 of each λ, from the dense closed form and a sort per user
    task = build_eval_task(split, training_window_corpus(split), window="val")
    x = dense_train(split, n_users, n_pins)
    recalls = {}
    for value in grid:
        scores = np.where(x[task.user_ids] > 0, -np.inf, dense_ease(x, value)[task.user_ids])
        recall = []
        for row in range(len(task.user_ids)):
            order = sorted(task.corpus, key=lambda p, s=scores[row]: (-s[p], p))
            relevant = set(task.relevant.values[task.relevant.offsets[row] : task.relevant.offsets[row + 1]])
            top = {q for q in order[:50] if np.isfinite(scores[row, q])}
            recall.append(len(top & relevant) / len(relevant))
        recalls[value] = float(np.mean(recall))
        assert validation[0][str(value)] == pytest.approx(recalls[value])
    best = max(grid, key=lambda v: (recalls[v], -grid.index(v)))  # ties to the earlier value
    assert chosen[0] == best
    metrics = model.own_metrics()
    assert metrics["tune/lambda"] == best
    assert {k for k in metrics if k.startswith("tune/recall@50[")} == {
        f"tune/recall@50[lambda={v}]" for v in ("0.1", "5", "50", "2000")
    }


def test_bad_hyperparameters_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"model\.l2"):
        EASE(l2=0)
    with pytest.raises(ValueError, match=r"model\.l2"):
        EASE(l2=True)
    with pytest.raises(ValueError, match=r"model\.grid\[1\]"):
        EASE(grid=[10, -1])
    with pytest.raises(ValueError, match=r"model\.max_items"):
        EASE(max_items=0)
    with pytest.raises(ValueError, match=r"model\.grid is empty"):
        fit(EASE(tune=True, grid=[]), random_split(5), 30, 25)
    with pytest.raises(RuntimeError, match="before fit"):
        EASE().score(np.arange(2))


def test_refuses_more_engaged_pins_than_max_items() -> None:
    split = random_split(6, n_users=30, n_pins=25)
    engaged = len(np.unique(split.train["pin"]))
    with pytest.raises(
        ValueError, match=rf"{engaged} pins have a train engagement, over model\.max_items=10"
    ):
        fit(EASE(max_items=10), split, 30, 25)
    model = EASE(max_items=engaged)  # exactly at the limit is allowed
    fit(model, split, 30, 25)
    assert isinstance(model, Retriever)


def test_hydra_config() -> None:
    model = instantiate(OmegaConf.load(REPO / "conf" / "model" / "ease.yaml"))
    assert isinstance(model, EASE)
    assert model.tune is True
    assert model.grid == (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
    assert model.max_items == 10_000
