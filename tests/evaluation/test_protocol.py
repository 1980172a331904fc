"""Building evaluation tasks from splits, and scoring a ranking (the popularity baseline's) with them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate

from ebr.data.schema import (
    CLICK,
    IMPRESSION,
    REPIN,
    DataValidationError,
    FeatureTable,
    InteractionData,
    Split,
)
from ebr.evaluation.metrics import retrieval_metrics
from ebr.evaluation.protocol import evaluate_ranking
from ebr.evaluation.simulation import SimulationConfig
from ebr.evaluation.task import Csr, build_eval_task
from ebr.retrieval.popularity import Popularity
from ebr.retrieval.protocol import FitContext

CONF = Path(__file__).resolve().parents[2] / "conf"


def _events(rows: list[tuple[int, int, int, int]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["user", "pin", "timestamp", "event"])
    frame["interest"] = -1
    return frame


class _Forbidden:
    """Stands in for a window that must not be read: any attribute access fails the test."""

    def __getattr__(self, name: str):
        raise AssertionError(f"split.test was read (attribute {name!r})")


def _split() -> Split:
    train = _events([(0, 1, 10, CLICK), (0, 2, 11, REPIN), (1, 3, 12, IMPRESSION), (2, 4, 13, CLICK)])
    test = _events(
        [
            (0, 2, 100, CLICK),  # repeat of a train engagement
            (0, 5, 101, REPIN),  # new and in the corpus
            (0, 9, 102, CLICK),  # off the corpus
            (1, 9, 103, CLICK),  # user 1 engages only off the corpus: cold
            (2, 4, 104, REPIN),  # user 2 only repeats
            (3, 1, 105, CLICK),
            (3, 1, 106, REPIN),  # duplicate pair
            (3, 5, 107, IMPRESSION),  # impressions are not engagements
        ]
    )
    val = _events([(4, 5, 60, CLICK), (4, 2, 70, CLICK), (0, 1, 80, REPIN)])
    return Split(pretrain=train.iloc[:0], train=train, val=val, test=test, reference_time=100)


CORPUS = np.array([1, 2, 4, 5])


def _rows(csr: Csr) -> list[list[int]]:
    return [csr.values[a:b].tolist() for a, b in zip(csr.offsets[:-1], csr.offsets[1:])]


def test_build_eval_task_drops_and_counts_cold_users() -> None:
    task = build_eval_task(_split(), CORPUS)
    assert task.user_ids.tolist() == [0, 3]
    assert _rows(task.relevant) == [[5], [1]]
    assert _rows(task.exclude) == [[1, 2], []]
    assert task.timestamp == 100
    assert task.cold == {
        "window_users": 4,
        "cold_users": 1,
        "cold_items": 2,
        "repeat_items": 2,
        "repeat_only_users": 1,
    }


def test_build_eval_task_without_exclusion_keeps_repeats() -> None:
    task = build_eval_task(_split(), CORPUS, exclude_train=False)
    assert task.user_ids.tolist() == [0, 2, 3]
    assert _rows(task.relevant) == [[2, 5], [4], [1]]
    assert task.exclude is None
    assert task.cold["repeat_items"] == 0


def test_val_window_never_reads_test() -> None:
    split = _split()
    split = Split(split.pretrain, split.train, split.val, _Forbidden(), split.reference_time)
    task = build_eval_task(split, CORPUS, window="val")
    assert task.user_ids.tolist() == [4]  # user 0's val pin 1 repeats a train pin
    assert _rows(task.relevant) == [[2, 5]]
    assert task.timestamp == 60


def test_bad_window_and_columns_are_named() -> None:
    with pytest.raises(ValueError, match="window must be one of"):
        build_eval_task(_split(), CORPUS, window="future")
    split = _split()
    broken = Split(split.pretrain, split.train, split.val, split.test.drop(columns="pin"), 100)
    with pytest.raises(DataValidationError, match=r"split.test: missing column\(s\) \['pin'\]"):
        build_eval_task(broken, CORPUS)
    with pytest.raises(ValueError, match="corpus must hold sorted"):
        build_eval_task(split, np.array([5, 1]))


def _random_split(rng: np.random.Generator, n_users: int = 60, n_pins: int = 80) -> Split:
    def window(n: int, start: int) -> pd.DataFrame:
        frame = pd.DataFrame(
            {
                "user": rng.integers(0, n_users, n),
                "pin": rng.zipf(1.5, n) % n_pins,
                "timestamp": start + np.arange(n),
                "event": rng.choice([IMPRESSION, CLICK, REPIN], n),
            }
        )
        frame["interest"] = -1
        return frame

    train, test = window(1500, 0), window(400, 10_000)
    return Split(pretrain=train.iloc[:0], train=train, val=test.iloc[:0], test=test, reference_time=10_000)


def popularity_ranking(split: Split, task, k: int) -> np.ndarray:
    """The popularity retriever fitted on `split` and asked for `task`."""
    model = Popularity()
    data = InteractionData("tiny", split.train, FeatureTable(100), FeatureTable(100))
    model.fit(data, split, FitContext(corpus=task.corpus, run_dir=Path(".")))
    return model.retrieve(task, k)


def test_popularity_ranking_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    split = _random_split(rng)
    corpus = np.arange(0, 80, 2)
    task = build_eval_task(split, corpus)
    ranking = popularity_ranking(split, task, k=15)
    engaged = split.train[split.train["event"] >= CLICK]
    counts = Counter(int(p) for p in engaged["pin"] if p in set(corpus.tolist()))
    order = sorted(corpus.tolist(), key=lambda pin: (-counts.get(pin, 0), pin))
    for row, user in enumerate(task.user_ids):
        seen = set(engaged.loc[engaged["user"] == user, "pin"].tolist())
        expected = [pin for pin in order if pin not in seen][:15]
        assert ranking[row].tolist() == expected + [-1] * (15 - len(expected))
    assert len(set(ranking[:, 0].tolist())) > 1, "exclusion should change some users' top pin"


def test_evaluate_ranking_prefixes_keys() -> None:
    rng = np.random.default_rng(4)
    split = _random_split(rng)
    task = build_eval_task(split, np.arange(80))
    ranking = popularity_ranking(split, task, 50)
    metrics = evaluate_ranking(task, ranking, ks=(10, 50), prefix="popularity")
    assert metrics == {
        f"popularity/{k}": v for k, v in retrieval_metrics(ranking, task.relevant, (10, 50)).items()
    }
    assert metrics["popularity/recall@50"] > 0


def test_config_files_instantiate() -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from ebr.config import register_schemas

    # the preset starts from its schemas (schema/eval, schema/simulation): compose it
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        evaluation = compose("train", overrides=["eval=default"]).eval
    GlobalHydra.instance().clear()
    assert list(evaluation.ks) == [10, 50, 100]
    assert evaluation.exclude_train is True
    assert instantiate(evaluation.simulation) == SimulationConfig()
