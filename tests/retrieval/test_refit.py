"""The refit protocol for retrievers: tune on train -> val, refit on train+val, never read test."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_baselines import frame, random_split

from ebr.data.schema import FeatureTable, InteractionData, Split
from ebr.retrieval.ease import EASE
from ebr.retrieval.itemknn import ItemKNN
from ebr.retrieval.protocol import FitContext, TuningWindow
from ebr.retrieval.puresvd import PureSVD
from ebr.retrieval.refit import fit_windows
from ebr.serving.corpus import training_window_corpus

N_USERS, N_PINS = 60, 120

TUNED = [
    (lambda: PureSVD(tune=True, grid=[2, 8, 1]), "rank", lambda v: PureSVD(rank=v)),
    (lambda: ItemKNN(tune=True, grid=[3, 10, 1]), "neighbours", lambda v: ItemKNN(neighbours=v)),
    (lambda: EASE(tune=True, grid=[0.1, 5, 50, 2000]), "l2", lambda v: EASE(l2=v)),
]


def merged(split: Split, test: pd.DataFrame | None = None) -> Split:
    """The refit split written out: train+val as train, val empty, `test` (default split.test)."""
    train = pd.concat([split.train, split.val], ignore_index=True)
    return Split(split.pretrain, train, split.val.iloc[:0], split.test if test is None else test, 0)


def timed(split: Split) -> Split:
    """`split` with its windows' timestamps shifted into time order: train, then val, then test."""

    def shifted(window: pd.DataFrame, offset: int) -> pd.DataFrame:
        return window.assign(timestamp=window["timestamp"] + offset)

    return Split(split.pretrain, split.train, shifted(split.val, 10_000), shifted(split.test, 20_000), 20_000)


def data_for(split: Split) -> InteractionData:
    events = pd.concat([split.train, split.val, split.test])
    return InteractionData("tiny", events, FeatureTable(N_USERS), FeatureTable(N_PINS))


def fit_refit(model, cut: Split, refit: Split) -> None:
    """Fit `model` on `refit` with tuning on `cut`, as the pipeline does under eval.refit."""
    context = FitContext(
        corpus=training_window_corpus(refit),
        run_dir=Path("."),
        tuning=TuningWindow(cut, training_window_corpus(cut)),
    )
    model.fit(data_for(refit), refit, context)


def fit_plain(model, split: Split) -> None:
    model.fit(data_for(split), split, FitContext(corpus=training_window_corpus(split), run_dir=Path(".")))


@pytest.mark.parametrize(("make", "attribute", "fixed"), TUNED)
def test_tuning_chooses_on_train_to_val_and_refits_on_train_plus_val(
    make: Callable, attribute: str, fixed: Callable
) -> None:
    cut = random_split(4, N_USERS, N_PINS, density=0.05)
    refit = merged(cut)
    model = make()
    fit_refit(model, cut, refit)
    # the choice and its validation scores are those of tuning on the cut, as without refit
    plain = make()
    fit_plain(plain, cut)
    assert model.validation == plain.validation
    assert len(set(model.validation.values())) > 1
    assert getattr(model, attribute) == getattr(plain, attribute)
    users = np.arange(N_USERS)
    # the final model is the chosen value fitted on train+val, not the tuning fit on train
    on_merged, on_train = fixed(getattr(model, attribute)), fixed(getattr(model, attribute))
    fit_plain(on_merged, refit)
    fit_plain(on_train, cut)
    np.testing.assert_allclose(model.score(users), on_merged.score(users), atol=1e-10)
    assert not np.allclose(model.score(users), on_train.score(users))


@pytest.mark.parametrize(("make", "attribute", "fixed"), TUNED)
def test_refit_never_reads_test(make: Callable, attribute: str, fixed: Callable) -> None:
    cut = random_split(4, N_USERS, N_PINS, density=0.05)
    rng = np.random.default_rng(7)
    garbage = frame(rng.integers(0, N_USERS, 40), rng.integers(0, N_PINS, 40))
    results = []
    for test in (cut.test, garbage, garbage.iloc[:0]):
        model = make()
        tuned_on = Split(cut.pretrain, cut.train, cut.val, test, 0)
        fit_refit(model, tuned_on, merged(cut, test))
        results.append((getattr(model, attribute), model.validation, model.score(np.arange(N_USERS))))
    for value, validation, scores in results[1:]:
        assert value == results[0][0]
        assert validation == results[0][1]
        np.testing.assert_array_equal(scores, results[0][2])


def split_maker(cut: Split, merged_split: Split) -> Callable[..., Split]:
    """A split function returning `cut`, or `merged_split` when called with refit=True."""

    def make_split(data: InteractionData, refit: bool = False) -> Split:
        return merged_split if refit else cut

    return make_split


def test_fit_windows_without_refit_is_the_cut_itself() -> None:
    cut = random_split(0)
    windows = fit_windows(split_maker(cut, merged(cut)), data_for(cut), cut, "test", False)
    assert windows.split is cut
    assert windows.tuning is None
    assert windows.metrics() == {"eval/refit": 0.0}


def test_fit_windows_with_refit_fits_train_plus_val_and_tunes_on_the_cut() -> None:
    cut = timed(random_split(0))
    cut.cold.update({"val_cold": 3, "test_cold": 4, "users_too_few": 2})
    refit = merged(cut)
    windows = fit_windows(split_maker(cut, refit), data_for(cut), cut, "test", True)
    assert windows.split is refit
    assert windows.tuning is not None
    assert windows.tuning.split is cut
    np.testing.assert_array_equal(windows.tuning.corpus, np.unique(cut.train["pin"]))
    assert windows.metrics() == {
        "eval/refit": 1.0,
        "data/tuning_train_engagements": float(len(cut.train)),
        "data/tuning_val_engagements": float(len(cut.val)),
        "data/tuning_val_cold": 3.0,
        "data/tuning_users_too_few": 2.0,
    }


def test_refit_with_the_validation_window_is_ignored_with_a_warning(caplog) -> None:
    cut = random_split(0)
    with caplog.at_level(logging.WARNING, logger="ebr.retrieval.refit"):
        windows = fit_windows(split_maker(cut, merged(cut)), data_for(cut), cut, "val", True)
    assert windows.split is cut
    assert windows.metrics() == {"eval/refit": 0.0}
    assert "eval.refit=true is ignored with eval.window=val" in caplog.text


def test_a_split_function_that_ignores_refit_fails_clearly() -> None:
    cut = timed(random_split(0))
    with pytest.raises(ValueError, match=r"eval\.refit.*val holds"):
        fit_windows(split_maker(cut, cut), data_for(cut), cut, "test", True)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_refit_must_be_a_bool(value: object) -> None:
    cut = random_split(0)
    with pytest.raises(ValueError, match=r"eval\.refit must be true or false"):
        fit_windows(split_maker(cut, merged(cut)), data_for(cut), cut, "test", value)
