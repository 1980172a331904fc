"""Conditional retrieval: the conditioned user tower, interest-aware serving and its metrics.

Each check is against an independent computation (numpy brute force, a hand count), on tiny
inputs: no world is generated and nothing is trained.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from ebr import validation
from ebr.data.batching import CONDITION, TowerInput, with_condition
from ebr.data.csr import Csr, Ragged
from ebr.data.schema import NO_INTEREST, CategoricalFeature, FeatureTable, InteractionData
from ebr.evaluation.conditional_metrics import interest_metrics, topic_match
from ebr.models import conditioning
from ebr.models.conditioning import ConditioningConfig, conditioned_user_spec, training_conditions
from ebr.models.crossing.mlp import MLPCrossing
from ebr.models.tower import TowerSpec
from ebr.models.two_tower import TowerParts, TwoTowerModel
from ebr.serving import interests as serving_interests
from ebr.serving.conditional import InterestRetrieval
from ebr.serving.index import IndexConfig
from ebr.serving.interests import InterestProfile, InterestServing, merge_lists, split_budget
from ebr.serving.service import RetrievalService
from tests.test_end_to_end import REPO

CROSSING = functools.partial(MLPCrossing, hidden=[8])
N_INTERESTS = 4
ROWS = N_INTERESTS + 1


def _user_inputs(users: list[int], conditions: list[int] | None) -> TowerInput:
    sparse = KeyedJaggedTensor.from_lengths_sync(
        keys=["user_id"],
        values=torch.tensor(users),
        lengths=torch.ones(len(users), dtype=torch.int32),
        weights=torch.ones(len(users)),
    )
    inputs = TowerInput(sparse, torch.zeros(len(users), 0), torch.tensor(users))
    return inputs if conditions is None else with_condition(inputs, np.asarray(conditions))


def _model(mode: str | None) -> TwoTowerModel:
    torch.manual_seed(0)
    user = TowerSpec("user", {"user_id": 5})
    if mode is not None:
        user = conditioned_user_spec(user, ConditioningConfig(mode=mode), ROWS)
    config = None if mode is None else {"mode": mode, "rows": ROWS}
    pin = TowerSpec("pin", {"pin_id": 7})
    parts = TowerParts(conditioning=config)
    return TwoTowerModel(user, pin, CROSSING, embedding_dim=4, output_dim=3, parts=parts).eval()


# ---- the model ------------------------------------------------------------------------------------


def test_conditioning_none_builds_todays_model() -> None:
    spec = TowerSpec("user", {"user_id": 5})
    assert conditioned_user_spec(spec, ConditioningConfig(), ROWS) == spec
    assert conditioned_user_spec(spec, ConditioningConfig(mode="late_fusion"), ROWS) == spec
    plain = TwoTowerModel(spec, TowerSpec("pin", {"pin_id": 7}), CROSSING, embedding_dim=4, output_dim=3)
    assert _model(None).state_dict().keys() == plain.state_dict().keys()
    assert not any(CONDITION in name for name in plain.state_dict())


@pytest.mark.parametrize("mode", ["early_fusion", "late_fusion"])
def test_the_condition_changes_the_user_embedding(mode: str) -> None:
    model = _model(mode)
    with torch.no_grad():
        a = model.user_tower(*_astuple(_user_inputs([1, 1, 2], [0, 3, 0])))
        again = model.user_tower(*_astuple(_user_inputs([1], [0])))
    assert not torch.allclose(a[0], a[1], atol=1e-4)  # same user, two interests
    torch.testing.assert_close(a[0], again[0])
    torch.testing.assert_close(a.norm(dim=1), torch.ones(3))


def test_late_fusion_adds_the_interest_before_the_norm() -> None:
    model = _model("late_fusion")
    tower = model.user_tower
    inputs = _user_inputs([2, 4], [1, 3])
    with torch.no_grad():
        served = tower(inputs.sparse, inputs.dense)
        plain = _user_inputs([2, 4], None)
        fields = tower.fields(plain.sparse, plain.dense)
        projected = tower.projection(tower.crossing(tower.field_norm(fields).flatten(1)))
        table = tower.condition_ebc.embedding_bags[f"user__{CONDITION}_late"].weight
        expected = F.normalize(projected + table[[1, 3]], dim=-1)
    torch.testing.assert_close(served, expected)


def test_early_fusion_is_one_more_field() -> None:
    model = _model("early_fusion")
    assert model.user_tower.num_fields == 2
    assert model.user_tower.feature_names == ["user_id", CONDITION]


def test_an_unknown_interest_is_refused_not_zeroed() -> None:
    assert conditioning.check_conditions(np.array([0, ROWS - 1]), ROWS).tolist() == [0, ROWS - 1]
    with pytest.raises(ValueError, match=r"interest id 5 is unknown to the conditional model"):
        conditioning.check_conditions(np.array([1, ROWS]), ROWS)


def _data() -> InteractionData:
    """6 pins: tags [0], [1], [0, 2], [3], [1], [] (untagged); 3 users with weighted interests."""
    tags = Ragged.from_lengths(np.array([1, 1, 2, 1, 1, 0]), np.array([0, 1, 0, 2, 3, 1]))
    pins = FeatureTable(
        6,
        {
            "pin_id": CategoricalFeature.single(np.arange(6), 6),
            "interest": CategoricalFeature(tags.offsets, tags.values, N_INTERESTS),
        },
    )
    offsets = np.array([0, 3, 4, 4])
    users = FeatureTable(
        3,
        {
            "user_id": CategoricalFeature.single(np.arange(3), 3),
            "interests": CategoricalFeature(
                offsets, np.array([1, 0, 3, 2]), N_INTERESTS, np.array([0.2, 0.5, 0.3, 1.0], np.float32)
            ),
        },
    )
    events = pd.DataFrame(
        {
            "user": [0, 0, 1, 2],
            "pin": [2, 5, 1, 3],
            "timestamp": [0, 1, 2, 3],
            "event": [1, 1, 1, 1],
            "interest": [2, NO_INTEREST, 1, 3],
        }
    )
    return InteractionData(name="tiny", events=events, users=users, pins=pins, n_interests=N_INTERESTS)


def test_training_conditions_from_the_pin_or_the_log() -> None:
    data = _data()
    events = data.events
    # the pin's tag (pin 2 carries two: either); the untagged pin 5 gets the no-interest row
    first, *rest = training_conditions(events, data, "item_interest").tolist()
    assert first in (0, 2)
    assert rest == [ROWS - 1, 1, 3]
    # the logged source; exploration (NO_INTEREST) gets the no-interest row
    assert training_conditions(events, data, "source_interest").tolist() == [2, ROWS - 1, 1, 3]


def test_a_pin_with_several_tags_trains_each_of_them_as_a_condition() -> None:
    data = _data()
    # pin 2 carries tags 0 and 2: 4,000 engagements with it split about evenly between the two
    many = pd.DataFrame({"pin": np.full(4000, 2), "interest": np.full(4000, NO_INTEREST)})
    drawn = training_conditions(many, data, "item_interest")
    counts = np.bincount(drawn, minlength=ROWS)
    assert set(np.flatnonzero(counts)) == {0, 2}
    assert abs(counts[0] - 2000) < 4 * np.sqrt(1000)  # binomial(4000, 1/2): sd ~ 32
    # reproducible: the same rows, the same draws
    assert training_conditions(many, data, "item_interest").tolist() == drawn.tolist()


def test_interest_profiles_followed_and_inferred() -> None:
    data = _data()
    followed = serving_interests.interest_profile(data, data.events, InterestServing(n_interests=2))
    lengths, values, weights = followed.of(np.arange(3))
    assert lengths.tolist() == [2, 1, 0]
    assert values.tolist() == [0, 3, 2]
    np.testing.assert_allclose(weights, [0.5 / 0.8, 0.3 / 0.8, 1.0])
    inferred = serving_interests.interest_profile(
        data, data.events, InterestServing(interests_from="inferred")
    )
    # user 0 engaged pin 2 (tags 0, 2: half each) and the untagged pin 5
    lengths, values, weights = inferred.of(np.arange(3))
    assert lengths.tolist() == [2, 1, 1]
    assert values.tolist() == [0, 2, 1, 3]
    np.testing.assert_allclose(weights, [0.5, 0.5, 1.0, 1.0])


# ---- budgets and the merge ------------------------------------------------------------------------


def test_budgets_split_k_equally_or_by_weight() -> None:
    lengths, weights = np.array([3, 1, 2]), np.array([0.45, 0.35, 0.2, 1.0, 0.9, 0.1])
    assert split_budget(lengths, weights, 10, "equal").tolist() == [4, 3, 3, 10, 5, 5]
    # 4.5, 3.5, 2 -> one left over, the tie goes to the higher weight; 9, 1
    assert split_budget(lengths, weights, 10, "proportional").tolist() == [5, 3, 2, 10, 9, 1]
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 6, 200)
    raw = rng.gamma(1.0, size=int(lengths.sum()))
    row = np.repeat(np.arange(200), lengths)
    weights = raw / np.bincount(row, weights=raw)[row]
    for mode in ("equal", "proportional"):
        assert (np.bincount(row, weights=split_budget(lengths, weights, 100, mode)) == 100).all()


def test_merge_gives_k_distinct_pins_with_each_budget() -> None:
    # user 0: two queries sharing pins 5 and 7; user 1: one query short of results
    ids = np.array([[5, 7, 1, 2], [7, 5, 8, 9], [3, -1, -1, -1]])
    scores = np.array([[0.9, 0.8, 0.5, 0.4], [0.95, 0.7, 0.6, 0.3], [0.1, -np.inf, -np.inf, -np.inf]])
    merged, source = merge_lists(ids, scores, np.array([2, 1]), np.array([2, 2, 4]), 4)
    # query 0 takes 5, 7; query 1 skips both and takes 8, 9; ordered by score
    assert merged[0].tolist() == [5, 7, 8, 9]
    assert source[0].tolist() == [0, 0, 1, 1]
    assert merged[1].tolist() == [3, -1, -1, -1]


# ---- filters on the index -------------------------------------------------------------------------


def _served(settings: InterestServing, encode=None):
    rng = np.random.default_rng(1)
    n_pins, n_users, dim = 300, 40, 8
    pins = rng.normal(size=(n_pins, dim)).astype(np.float32)
    users = rng.normal(size=(n_users, dim)).astype(np.float32)
    tag_rows = np.concatenate([np.arange(n_pins), rng.choice(n_pins, 60, replace=False)])
    tags = Csr.from_pairs(tag_rows, rng.integers(0, N_INTERESTS, len(tag_rows)), n_pins)
    corpus = np.arange(n_pins)
    service = RetrievalService(lambda ids: users[ids], pins, corpus, IndexConfig(), progress=False)
    lengths = rng.integers(0, 4, n_users)  # some users have no interest
    values = np.concatenate([rng.choice(N_INTERESTS, n, replace=False) for n in lengths])
    weights = np.concatenate([np.full(n, 1.0 / n) for n in lengths if n])
    profile = InterestProfile(Ragged.from_lengths(lengths, values), weights)
    exclude = Csr.from_pairs(rng.integers(0, n_users, 200), rng.integers(0, n_pins, 200), n_users)
    retrieval = InterestRetrieval(service, profile, tags, settings, encode=encode, no_interest=N_INTERESTS)
    return retrieval, pins, users, tags, exclude


def _exact(scores: np.ndarray, allowed: np.ndarray, k: int) -> list[int]:
    order = [int(p) for p in np.argsort(-scores, kind="stable") if allowed[p]]
    return order[:k]


@pytest.mark.parametrize("method", ["sub_index", "selector"])
def test_pre_filter_returns_the_exact_filtered_top_k(method: str) -> None:
    retrieval, pins, users, tags, exclude = _served(InterestServing("pre", pre_filter_method=method))
    user_ids = np.arange(len(users))
    merged = retrieval.retrieve(user_ids, 20, exclude)
    lists, conditions, lengths = retrieval.queries
    owners = np.repeat(user_ids, lengths)
    for row, (user, interest) in enumerate(zip(owners, conditions)):
        allowed = tags.contains_pairs(np.arange(len(pins)), np.full(len(pins), interest))
        allowed &= ~exclude.contains_pairs(np.full(len(pins), user), np.arange(len(pins)))
        found = [int(p) for p in lists[row] if p >= 0]
        assert found == _exact(pins @ users[user], allowed, 20)
    assert retrieval.last["cond/fallback_users"] == float((retrieval.profile.counts(user_ids) == 0).sum())
    for row in merged:
        real = row[row >= 0]
        assert len(np.unique(real)) == len(real) == 20


def test_post_filter_keeps_the_interest_and_counts_its_shortfalls() -> None:
    settings = InterestServing("post", post_overfetch=1.5)
    retrieval, pins, users, tags, exclude = _served(settings)
    user_ids = np.arange(len(users))
    retrieval.retrieve(user_ids, 12, exclude)
    lists, conditions, lengths = retrieval.queries
    owners = np.repeat(user_ids, lengths)
    served = lengths[lengths > 0]
    budgets = split_budget(served, np.concatenate([np.full(n, 1.0 / n) for n in served]), 12, "equal")
    short = 0
    for row, (user, interest) in enumerate(zip(owners, conditions)):
        found = lists[row][lists[row] >= 0]
        assert tags.contains_pairs(found, np.full(len(found), interest)).all()
        # an independent count: the tagged pins among the exact top ceil(1.5 x budget)
        allowed = ~exclude.contains_pairs(np.full(len(pins), user), np.arange(len(pins)))
        fetched = _exact(pins @ users[user], allowed, int(np.ceil(1.5 * budgets[row])))
        tagged = int(tags.contains_pairs(np.array(fetched), np.full(len(fetched), interest)).sum())
        assert len(found) == min(tagged, 12)
        short += tagged < budgets[row]
    assert short > 0
    assert retrieval.last["cond/post_shortfall_queries"] == pytest.approx(short / len(conditions))


def test_union_filter_is_the_plain_top_k_among_the_users_interests() -> None:
    retrieval, pins, users, tags, exclude = _served(InterestServing("union"))
    user_ids = np.arange(len(users))
    merged = retrieval.retrieve(user_ids, 10, exclude)
    lengths, values, _ = retrieval.profile.of(user_ids)
    starts = np.cumsum(lengths) - lengths
    for user in user_ids:
        mine = values[starts[user] : starts[user] + lengths[user]]
        allowed = ~exclude.contains_pairs(np.full(len(pins), user), np.arange(len(pins)))
        if len(mine):  # a user without interests falls back to the plain top k
            allowed &= (
                np.bincount(tags.row_of_value(), weights=np.isin(tags.values, mine), minlength=len(pins)) > 0
            )
        assert [int(p) for p in merged[user] if p >= 0] == _exact(pins @ users[user], allowed, 10)


def test_a_user_without_interests_gets_the_no_interest_condition() -> None:
    seen = []

    def encode(users: np.ndarray, conditions: np.ndarray) -> np.ndarray:
        seen.append((users.copy(), conditions.copy()))
        return np.ones((len(users), 8), np.float32)

    retrieval, _, users, _, exclude = _served(InterestServing("none"), encode=encode)
    retrieval.retrieve(np.arange(len(users)), 10, exclude)
    ((queried, conditions),) = seen
    lacking = retrieval.profile.counts(np.arange(len(users))) == 0
    assert set(conditions[np.isin(queried, np.flatnonzero(lacking))].tolist()) == {N_INTERESTS}
    assert retrieval.last["cond/fallback_users"] == float(lacking.sum()) > 0


# ---- metrics --------------------------------------------------------------------------------------


def test_topic_match_against_a_hand_count() -> None:
    tags = Csr.from_pairs(np.array([0, 1, 2, 2, 3]), np.array([0, 1, 0, 1, 2]), 4)
    # user 0 (two queries): interest 0 -> pins 0, 2, 3 (2 of 3 tagged 0); interest 1 -> 1, -1 (1 of 1)
    # user 1 (one query): interest 2 -> 3, 0 (1 of 2)
    lists = np.array([[0, 2, 3], [1, -1, -1], [3, 0, -1]])
    metrics = topic_match(lists, np.array([0, 1, 2]), tags, [1, 3], np.array([2, 1]))
    assert metrics["topic_match@3"] == pytest.approx((2 / 3 + 1 + 1 / 2) / 3)
    assert metrics["topic_match@1"] == pytest.approx((1 + 1 + 1) / 3)
    assert metrics["topic_match@3/multi_interest"] == pytest.approx((2 / 3 + 1) / 2)
    assert metrics["topic_match@3/single_interest"] == pytest.approx(1 / 2)


def test_interest_metrics_against_a_hand_count() -> None:
    tags = Csr.from_pairs(np.array([0, 1, 2, 3]), np.array([0, 1, 0, 2]), 4)
    relevant = Csr.from_pairs(np.array([0, 0, 0, 1]), np.array([0, 1, 2, 3]), 2)
    retrieved = np.array([[0, 3], [1, 3]])
    # user 0 serves interests 0 (top) and 1; user 1 serves interest 2
    metrics = interest_metrics(retrieved, relevant, np.array([2, 1]), np.array([0, 1, 2]), tags, k=2)
    # (0, 0): relevant 0, 2 tagged 0, 0 retrieved -> hit; (0, 1): pin 1 not retrieved; (1, 2): hit
    assert metrics["filtered_hr@2"] == pytest.approx(2 / 3)
    assert metrics["filtered_hr@2/other_interests"] == 0.0
    # top-interest pins: user 0 {0, 2} -> 1/2, user 1 {3} -> 1; others: user 0 {1} -> 0
    assert metrics["recall@2/top_interest"] == pytest.approx(0.75)
    assert metrics["recall@2/other_interests"] == 0.0
    assert metrics["recall@2/multi_interest"] == pytest.approx(1 / 3)
    assert metrics["recall@2/single_interest"] == 1.0


# ---- settings -------------------------------------------------------------------------------------


@pytest.fixture
def composed():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        yield lambda overrides: compose("train", overrides=["data=synthetic_tiny", *overrides])
    GlobalHydra.instance().clear()


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["serving.interest_filter=exact"], "serving.interest_filter"),
        (["serving.interest_budget=random"], "serving.interest_budget"),
        (["serving.n_interests=0"], "serving.n_interests"),
        (["serving.post_overfetch=0.5"], "serving.post_overfetch"),
        (["model.conditioning.source=clicks"], "model.conditioning.source"),
        (["model/conditioning=early_fusion", "serving.interest_filter=union"], "serving.interest_filter"),
    ],
)
def test_bad_conditional_settings_name_their_key(composed, overrides, key) -> None:
    with pytest.raises(validation.ConfigValidationError, match=key.replace(".", r"\.")):
        validation.validate_config(composed(overrides))


@pytest.mark.parametrize(
    ("override", "options"),
    [
        ("model.conditioning.mode=late", conditioning.MODES),
        ("model.conditioning.source=clicks", conditioning.SOURCES),
        ("serving.interest_filter=exact", serving_interests.INTEREST_FILTERS),
        ("serving.interest_budget=random", serving_interests.BUDGETS),
        ("serving.interests_from=guessed", serving_interests.INTERESTS_FROM),
        ("serving.pre_filter_method=scan", serving_interests.PRE_FILTER_METHODS),
    ],
)
def test_the_checks_list_the_modules_options(composed, override, options) -> None:
    # the options are the owning module's, not a copy: the refusal names the key and lists them
    key = override.partition("=")[0]
    with pytest.raises(validation.ConfigValidationError) as refused:
        validation.validate_config(composed([override]))
    assert key in str(refused.value)
    assert ", ".join(options) in str(refused.value)


def _astuple(inputs: TowerInput) -> tuple:
    return inputs.sparse, inputs.dense
