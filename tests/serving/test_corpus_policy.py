"""Corpus policies (`corpus` group): scoring, budget, de-duplication and signature remapping,
checked against hand-made event logs and independent computations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ebr.data.schema import (
    CLICK,
    IMPRESSION,
    REPIN,
    SECONDS_PER_DAY,
    CategoricalFeature,
    DataValidationError,
    FeatureTable,
    InteractionData,
    Split,
)
from ebr.evaluation.protocol import evaluate_ranking
from ebr.evaluation.task import as_labels, build_eval_task
from ebr.serving.corpus import CorpusPolicy, corpus_serving_time, decay_weights, training_window_corpus
from ebr.serving.signatures import (
    COARSE,
    FINE,
    feature_level,
    pin_signatures,
    remap_split,
    with_signature_feature,
)

DAY = SECONDS_PER_DAY
SERVE = 10 * DAY


@pytest.fixture(scope="module")
def tiny_world() -> tuple[InteractionData, Split]:
    from ebr.data.splits import global_temporal_split
    from ebr.data.world import WorldConfig, generate_world

    data = generate_world(WorldConfig(n_users=1500, n_pins=800, n_interests=12, n_days=30))
    return data, global_temporal_split(data)


def _events(rows: list[tuple[int, int, float, int]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["user", "pin", "timestamp", "event"])
    frame["timestamp"] = (frame["timestamp"] * DAY).astype(np.int64)
    frame["interest"] = -1
    return frame


def _pins(n: int, coarse: list[int] | None = None) -> FeatureTable:
    meta = {} if coarse is None else {COARSE: np.array(coarse), FINE: np.arange(n)}
    return FeatureTable(n, meta=meta)


# pin 0: three old clicks; pin 1: one click half a day before serving; pin 2: two clicks two days
# before; pin 3: impressions only; pin 4: engaged only at or after serving time (must never count)
LOG = _events(
    [
        (0, 0, 1.0, CLICK),
        (1, 0, 1.0, CLICK),
        (2, 0, 1.0, CLICK),
        (0, 1, 9.5, CLICK),
        (1, 2, 8.0, CLICK),
        (2, 2, 8.0, CLICK),
        (0, 3, 9.0, IMPRESSION),
        (1, 4, 10.0, CLICK),
        (2, 4, 12.0, REPIN),
    ]
)


def test_sum_and_time_decay_pick_different_corpora() -> None:
    pins = _pins(5)
    total = CorpusPolicy(scoring="sum", size=2).build(pins, LOG, SERVE)
    # sums 3, 1, 2 (pin 4's engagements are not before serving time)
    assert total.pins.tolist() == [0, 2]
    np.testing.assert_array_equal(total.scores, [3, 1, 2, 0, 0])
    decayed = CorpusPolicy(scoring="time_decay", half_life_days=1.0, size=2).build(pins, LOG, SERVE)
    # 3 * 2^-9 = 0.006, 2^-0.5 = 0.71, 2 * 2^-2 = 0.5
    assert decayed.pins.tolist() == [1, 2]
    np.testing.assert_allclose(decayed.scores[:3], [3 * 2**-9, 2**-0.5, 2 * 2**-2])
    recent = CorpusPolicy(scoring="sum", window_days=1.0, size=2).build(pins, LOG, SERVE)
    assert recent.pins.tolist() == [1], "a 1-day window sees only pin 1; the budget is not padded"
    # no budget: every pin with a counted engagement
    assert CorpusPolicy(scoring="sum").build(pins, LOG, SERVE).pins.tolist() == [0, 1, 2]


def test_weights_by_engagement_type() -> None:
    log = _events([(0, 0, 1.0, CLICK), (0, 1, 1.0, REPIN), (1, 1, 1.0, CLICK)])
    only_repins = CorpusPolicy(weights={"click": 0.0, "repin": 1.0}).build(_pins(2), log, SERVE)
    assert only_repins.pins.tolist() == [1]
    np.testing.assert_array_equal(only_repins.scores, [0.0, 1.0])
    weighted = CorpusPolicy(weights={"click": 1.0, "repin": 5.0}).build(_pins(2), log, SERVE)
    np.testing.assert_array_equal(weighted.scores, [1.0, 6.0])


def test_decay_weights_follow_the_formula() -> None:
    ages = np.array([0.0, 0.5, 2.0, 3.5, 40.0])
    expected = [math.exp(-math.log(2) * a / 2.0) for a in ages]
    np.testing.assert_allclose(decay_weights(ages, 2.0), expected, rtol=1e-12)
    assert decay_weights(np.array([2.0]), 2.0)[0] == pytest.approx(0.5)
    # a pin's decayed score is the sum of its engagements' weights, computed row by row
    rng = np.random.default_rng(0)
    rows = [(0, int(rng.integers(4)), float(rng.uniform(0, 9.9)), CLICK) for _ in range(50)]
    log = _events(rows)
    scores = CorpusPolicy(scoring="time_decay", half_life_days=3.0).scores(log, SERVE, 4)
    brute = np.zeros(4)
    for _, pin, t, _ in log[["user", "pin", "timestamp", "event"]].itertuples(index=False):
        brute[pin] += 2 ** (-((SERVE - t) / DAY) / 3.0)
    np.testing.assert_allclose(scores, brute, rtol=1e-12)


def test_budget_ties_go_to_the_lowest_pin_id_and_fractions_round() -> None:
    log = _events([(0, p, 1.0, CLICK) for p in (5, 3, 7, 1)])
    assert CorpusPolicy(size=2).build(_pins(8), log, SERVE).pins.tolist() == [1, 3]
    assert CorpusPolicy(size=0.25).budget(8) == 2
    assert CorpusPolicy(size=1.0).budget(8) == 8


def test_default_policy_equals_the_training_window_corpus() -> None:
    train = _events([(0, 9, 0.1, CLICK), (1, 3, 0.2, REPIN), (2, 5, 0.3, IMPRESSION), (0, 3, 0.4, CLICK)])
    later = _events([(0, 11, 10.0, CLICK)])
    split = Split(pretrain=later, train=train, val=later, test=later, reference_time=SERVE)
    built = CorpusPolicy().build(_pins(12), split.train, corpus_serving_time(split, "test"))
    assert built.pins.tolist() == training_window_corpus(split).tolist() == [3, 9]
    assert built.representative is None
    assert built.duplicates_removed == 0


def test_default_policy_equals_the_training_window_corpus_on_the_tiny_world(tiny_world) -> None:
    data, split = tiny_world
    for window in ("test", "val"):
        built = CorpusPolicy().build(data.pins, split.train, corpus_serving_time(split, window))
        np.testing.assert_array_equal(built.pins, training_window_corpus(split))


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"scoring": "time_decay", "half_life_days": 0.0}, "corpus.half_life_days"),
        ({"scoring": "time_decay", "half_life_days": -2.0}, "corpus.half_life_days"),
        ({"scoring": "time_decay"}, "corpus.half_life_days"),
        ({"scoring": "decay"}, "corpus.scoring"),
        ({"size": 0}, "corpus.size"),
        ({"size": -3}, "corpus.size"),
        ({"size": -0.1}, "corpus.size"),
        ({"size": 1.5}, "corpus.size"),
        ({"size": True}, "corpus.size"),
        ({"window_days": 0.0}, "corpus.window_days"),
        ({"weights": {"save": 1.0}}, "corpus.weights"),
        ({"weights": {"click": 0.0, "repin": 0.0}}, "corpus.weights"),
        ({"remap_image_signature": True, "dedup": False}, "corpus.dedup"),
    ],
)
def test_bad_settings_fail_naming_the_key(kwargs, key) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        CorpusPolicy(**kwargs)


def test_a_budget_larger_than_the_pins_fails() -> None:
    with pytest.raises(ValueError, match=r"corpus\.size=6 exceeds the data's 5 pins"):
        CorpusPolicy(size=6).build(_pins(5), LOG, SERVE)


# ---- signatures ---------------------------------------------------------------------------------

# signature 0 = pins {0, 1}, 1 = {2, 3}, 2 = {4}
COARSE_OF = [0, 0, 1, 1, 2]
SIGNATURE_LOG = _events(
    [
        (0, 0, 9.0, CLICK),
        (0, 1, 9.0, CLICK),
        (1, 1, 9.0, CLICK),
        (2, 1, 9.0, CLICK),
        (0, 2, 9.0, CLICK),
        (1, 3, 9.0, CLICK),
        (1, 4, 9.0, CLICK),
    ]
)


def test_dedup_keeps_the_best_member_of_each_coarse_signature_once() -> None:
    pins = _pins(5, COARSE_OF)
    remapped = CorpusPolicy(dedup=True, remap_image_signature=True).build(pins, SIGNATURE_LOG, SERVE)
    # pin 1 beats pin 0 (3 vs 1); pins 2 and 3 tie (1 each): the lower id
    assert remapped.pins.tolist() == [1, 2, 4]
    signatures = np.array(COARSE_OF)[remapped.pins]
    assert len(np.unique(signatures)) == len(signatures), "a signature appears twice in the corpus"
    assert remapped.duplicates_removed == 2
    np.testing.assert_array_equal(remapped.representative, [1, 1, 2, 2, 4])
    # fine signatures are unique per pin: de-duplication at that level removes nothing
    fine = CorpusPolicy(dedup=True, remap_image_signature=False).build(pins, SIGNATURE_LOG, SERVE)
    assert fine.pins.tolist() == [0, 1, 2, 3, 4]
    assert fine.duplicates_removed == 0
    assert fine.representative is None
    # the budget counts signatures' representatives, not duplicates
    budget = CorpusPolicy(dedup=True, remap_image_signature=True, size=2).build(pins, SIGNATURE_LOG, SERVE)
    assert budget.pins.tolist() == [1, 2]


def test_remapping_moves_labels_to_the_representative() -> None:
    pins = _pins(5, COARSE_OF)
    built = CorpusPolicy(dedup=True, remap_image_signature=True).build(pins, SIGNATURE_LOG, SERVE)
    # user 3 engages pin 0 (a duplicate left out of the corpus) in test, user 4 pin 3
    test = _events([(3, 0, 10.5, CLICK), (4, 3, 10.5, CLICK), (4, 4, 10.5, CLICK)])
    split = Split(SIGNATURE_LOG.iloc[:0], SIGNATURE_LOG, test.iloc[:0], test, SERVE)
    remapped = remap_split(split, built.representative)
    assert remapped.train["pin"].tolist() == [1, 1, 1, 1, 2, 2, 4], "training positives are remapped"
    task = build_eval_task(remapped, built.pins)
    assert task.user_ids.tolist() == [3, 4]
    assert task.relevant.values.tolist() == [1, 2, 4], "a label on a duplicate counts for its representative"
    # without remapping, pin 0 is off a pin-0-less corpus and user 3 is not evaluated
    plain = build_eval_task(split, built.pins)
    assert plain.user_ids.tolist() == [4]
    # the user who engaged a duplicate in train is excluded from its representative
    repeat = remap_split(_with_test(split, [(0, 0, 10.5, CLICK)]), built.representative)
    assert build_eval_task(repeat, built.pins).user_ids.tolist() == [3, 4]


def _with_test(split: Split, rows: list[tuple[int, int, float, int]]) -> Split:
    test = pd.concat([split.test, _events(rows)], ignore_index=True)
    return Split(split.pretrain, split.train, split.val, test, split.reference_time)


def test_signature_hits_count_any_member_once() -> None:
    coarse = np.array(COARSE_OF)
    corpus = np.arange(5)
    test = _events([(5, 0, 10.5, CLICK), (6, 2, 10.5, CLICK), (6, 3, 10.5, CLICK)])
    split = Split(SIGNATURE_LOG.iloc[:0], SIGNATURE_LOG, test.iloc[:0], test, SERVE)
    task = build_eval_task(split, corpus, label_of=coarse)
    assert task.relevant.values.tolist() == [0, 1], "relevance is per signature, each once"
    # user 5 retrieves pin 1 (a duplicate of the engaged pin 0): a hit; user 6 retrieves both
    # members of signature 1 and then pin 4: signature 1 once, then signature 2
    retrieved = np.array([[1, 4, -1], [3, 2, 4]])
    metrics = evaluate_ranking(task, retrieved, ks=[1, 2])
    assert metrics["recall@1"] == 1.0
    np.testing.assert_array_equal(as_labels(retrieved, coarse), [[0, 2, -1], [1, 2, -1]])
    # train engagements exclude every corpus member of their signature: user 0 engaged 0, 1, 2
    history = build_eval_task(
        _with_test(split, [(0, 3, 10.5, CLICK), (0, 4, 10.5, CLICK)]), corpus, label_of=coarse
    )
    row = history.user_ids.tolist().index(0)
    assert sorted(
        history.exclude.values[history.exclude.offsets[row] : history.exclude.offsets[row + 1]]
    ) == [
        0,
        1,
        2,
        3,
    ]
    assert history.relevant.values[
        history.relevant.offsets[row] : history.relevant.offsets[row + 1]
    ].tolist() == [2]


def test_the_signature_feature_follows_the_remap_setting() -> None:
    coarse = np.array(COARSE_OF)
    pins = FeatureTable(
        5,
        categorical={"image_signature": CategoricalFeature.single(coarse, 3)},
        meta={COARSE: coarse, FINE: np.arange(5)},
    )
    data = InteractionData("t", SIGNATURE_LOG, FeatureTable(7), pins)
    assert with_signature_feature(data, None) is data
    assert feature_level(data.pins) == "coarse"
    fine = with_signature_feature(data, False).pins
    assert feature_level(fine) == "fine"
    assert fine.categorical["image_signature"].cardinality == 5
    assert feature_level(with_signature_feature(data, True).pins) == "coarse"


def test_data_without_signatures_refuses_remapping_and_dedups_nothing() -> None:
    pins = _pins(5)
    with pytest.raises(DataValidationError, match=r"corpus\.remap_image_signature"):
        CorpusPolicy(dedup=True, remap_image_signature=True).build(pins, SIGNATURE_LOG, SERVE)
    with pytest.raises(DataValidationError, match=r"eval\.hit_level"):
        pin_signatures(pins, COARSE, "eval.hit_level")
    plain = CorpusPolicy(dedup=True, remap_image_signature=False).build(pins, SIGNATURE_LOG, SERVE)
    assert plain.pins.tolist() == [0, 1, 2, 3, 4]
    assert plain.duplicates_removed == 0
    data = InteractionData("t", SIGNATURE_LOG, FeatureTable(7), pins)
    assert with_signature_feature(data, False) is data


def test_serving_time_is_the_window_start_or_the_end_of_a_per_user_fit() -> None:
    val = _events([(0, 1, 10.2, CLICK), (1, 1, 10.1, CLICK)])
    split = Split(LOG.iloc[:0], LOG, val, val, 11 * DAY, windows={"train": (0, SERVE)})
    assert corpus_serving_time(split, "test") == 11 * DAY
    assert corpus_serving_time(split, "val") == int(10.1 * DAY)
    per_user = Split(LOG.iloc[:0], LOG, val, val, 0)
    assert corpus_serving_time(per_user, "test") == 12 * DAY + 1


def test_a_served_corpus_keeps_the_tasks_labels_and_restricts_exclusions() -> None:
    from ebr.evaluation.task import served_from

    # user 0 engaged 0, 1, 2 in train; user 1's test pin 4 is a repeat; user 2 engaged 1
    test = _events([(0, 3, 10.5, CLICK), (1, 4, 10.5, CLICK), (2, 0, 10.5, CLICK)])
    split = Split(SIGNATURE_LOG.iloc[:0], SIGNATURE_LOG, test.iloc[:0], test, SERVE)
    wide = build_eval_task(split, np.arange(5))
    narrow = served_from(wide, np.array([1, 4]))
    assert narrow.user_ids.tolist() == wide.user_ids.tolist() == [0, 2]
    assert narrow.relevant.values.tolist() == wide.relevant.values.tolist() == [3, 0]
    assert wide.exclude.values.tolist() == [0, 1, 2, 1]
    assert narrow.exclude.values.tolist() == [1, 1], "only served pins are excluded"
    assert narrow.corpus.tolist() == [1, 4]


def test_new_pins_take_their_share_of_the_budget_newest_first() -> None:
    # pins 0-2 engaged (scores 3, 2, 1); pins 3-6 never engaged, created on days 2, 8, 9.5, 11
    # (pin 6 only after serving time, so it does not exist yet); pins 4 and 5 share a signature
    events = _events([(0, 0, 1, CLICK), (1, 0, 2, CLICK), (2, 0, 3, CLICK), (0, 1, 4, REPIN)])
    events = pd.concat([events, _events([(1, 1, 5, CLICK), (2, 2, 6, CLICK)])], ignore_index=True)
    created = np.array([0, 0, 0, 2, 8, 9.5, 11]) * DAY
    pins = FeatureTable(
        7, meta={"created_at": created.astype(np.int64), COARSE: np.array([0, 1, 2, 3, 4, 4, 5])}
    )
    policy = CorpusPolicy(scoring="sum", size=4, new_pins=0.5, dedup=True, remap_image_signature=False)
    # fine signatures are the pins themselves: 5 (day 9.5) and 4 (day 8) are the newest unengaged
    pins_fine = FeatureTable(7, meta={**pins.meta, FINE: np.arange(7)})
    built = policy.build(pins_fine, events, SERVE)
    assert built.pins.tolist() == [0, 1, 4, 5]
    assert built.metrics()["corpus/new_pins"] == 2  # 2 engaged (best scores) + 2 new; pin 6 not yet created
    # without the share the same budget is every engaged pin and nothing new
    plain = CorpusPolicy(scoring="sum", size=4, dedup=True, remap_image_signature=False).build(
        pins_fine, events, SERVE
    )
    assert plain.pins.tolist() == [0, 1, 2]
    # one per signature: with 4 and 5 sharing a fine signature only the newer (5) is kept
    shared = FeatureTable(7, meta={**pins.meta, FINE: np.array([0, 1, 2, 3, 4, 4, 5])})
    assert policy.build(shared, events, SERVE).pins.tolist() == [0, 1, 3, 5]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"new_pins": 1.0, "size": 10}, r"corpus\.new_pins must be a share"),
        ({"new_pins": -0.1, "size": 10}, r"corpus\.new_pins must be a share"),
        ({"new_pins": 0.2}, r"corpus\.new_pins needs a budget"),
        (
            {"new_pins": 0.2, "size": 10, "dedup": True, "remap_image_signature": True},
            "remap_image_signature",
        ),
    ],
)
def test_bad_new_pin_settings_are_refused(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        CorpusPolicy(**kwargs)


def test_new_pins_need_creation_times() -> None:
    events = _events([(0, 0, 1, CLICK)])
    with pytest.raises(DataValidationError, match="created_at"):
        CorpusPolicy(size=1, new_pins=0.5).build(FeatureTable(3), events, SERVE)
