"""`corpus/recall_ceiling` and `corpus/new_pin_share` against brute-force counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ebr.data.schema import CLICK, IMPRESSION, REPIN, FeatureTable, InteractionData, Split
from ebr.evaluation.corpus_metrics import NEVER, creation_times, new_pin_share, recall_ceiling


def _frame(rows: list[tuple[int, int, int, int]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["user", "pin", "timestamp", "event"])
    frame["interest"] = -1
    return frame


def _random_split(seed: int) -> Split:
    rng = np.random.default_rng(seed)

    def rows(n: int, start: int) -> list[tuple[int, int, int, int]]:
        return [
            (
                int(rng.integers(15)),
                int(rng.integers(30)),
                start + i,
                int(rng.choice([IMPRESSION, CLICK, REPIN])),
            )
            for i in range(n)
        ]

    train, test = _frame(rows(200, 0)), _frame(rows(120, 1_000))
    return Split(train.iloc[:0], train, test.iloc[:0], test, 1_000)


def _brute_ceiling(
    split: Split, corpus: np.ndarray, exclude_train: bool, label_of: np.ndarray | None
) -> float:
    label = (lambda p: p) if label_of is None else (lambda p: int(label_of[p]))
    corpus_labels = {label(p) for p in corpus}
    train = {(u, label(p)) for u, p, _, e, _ in split.train.itertuples(index=False, name=None) if e >= CLICK}
    pairs = {(u, label(p)) for u, p, _, e, _ in split.test.itertuples(index=False, name=None) if e >= CLICK}
    if exclude_train:
        pairs = {pair for pair in pairs if pair not in train}
    return sum(item in corpus_labels for _, item in pairs) / len(pairs)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("exclude_train", [True, False])
@pytest.mark.parametrize("by_signature", [False, True])
def test_recall_ceiling_is_the_brute_force_share(seed, exclude_train, by_signature) -> None:
    split = _random_split(seed)
    rng = np.random.default_rng(seed + 10)
    corpus = np.sort(rng.choice(30, size=12, replace=False))
    label_of = rng.integers(0, 10, size=30) if by_signature else None
    expected = _brute_ceiling(split, corpus, exclude_train, label_of)
    assert recall_ceiling(split, corpus, "test", exclude_train, label_of) == pytest.approx(
        expected, abs=1e-12
    )


def test_recall_ceiling_of_a_hand_made_window() -> None:
    train = _frame([(0, 1, 0, CLICK)])
    # distinct pairs: (0, 1) repeat, (0, 2) in, (1, 2) in, (1, 3) out; (1, 2) twice counts once
    test = _frame([(0, 1, 5, CLICK), (0, 2, 5, CLICK), (1, 2, 5, CLICK), (1, 2, 6, REPIN), (1, 3, 6, CLICK)])
    split = Split(train.iloc[:0], train, test.iloc[:0], test, 5)
    assert recall_ceiling(split, np.array([1, 2]), "test", True) == pytest.approx(2 / 3)
    assert recall_ceiling(split, np.array([1, 2]), "test", False) == pytest.approx(3 / 4)


def test_new_pin_share_counts_pins_created_after_serving_time() -> None:
    train = _frame([(0, 1, 0, CLICK)])
    test = _frame(
        [(0, 0, 5, CLICK), (0, 1, 5, CLICK), (1, 2, 6, CLICK), (1, 2, 7, REPIN), (2, 3, 8, IMPRESSION)]
    )
    split = Split(train.iloc[:0], train, test.iloc[:0], test, 5)
    created = np.array([-10, 5, 6, 9])
    # pairs (0, 0), (0, 1), (1, 2): only pin 2 is created after serving time 5
    assert new_pin_share(split, created, 5) == pytest.approx(1 / 3)


def test_creation_times_fall_back_on_the_first_event() -> None:
    events = _frame([(0, 1, 7, IMPRESSION), (1, 1, 3, CLICK), (0, 0, 9, CLICK)])
    data = InteractionData("t", events, FeatureTable(2), FeatureTable(3))
    np.testing.assert_array_equal(creation_times(data), [9, 3, NEVER])
    world = InteractionData(
        "t", events, FeatureTable(2), FeatureTable(3, meta={"created_at": np.array([1, 2, 3])})
    )
    np.testing.assert_array_equal(creation_times(world), [1, 2, 3])
