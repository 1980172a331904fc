"""Conditional retrieval's serving cost: `serving.query_fetch` and `serving/candidates_per_request`.

Checked against hand counts and numpy brute force on the tiny served fixture of test_conditional.
"""

from __future__ import annotations

import numpy as np
import pytest

from ebr.serving.interests import InterestServing, candidates_per_request, split_budget
from tests.test_conditional import _exact, _served


def test_candidates_per_request_against_a_hand_count() -> None:
    fetches = np.array([100, 100, 100, 50, 50, 7])
    lengths = np.array([3, 2, 1])
    # separate searches add up; one shared vector needs one search of the largest fetch
    assert candidates_per_request(fetches, lengths, shared=False) == pytest.approx((300 + 100 + 7) / 3)
    assert candidates_per_request(fetches, lengths, shared=True) == pytest.approx((100 + 50 + 7) / 3)
    assert candidates_per_request(np.zeros(0), np.zeros(0, np.int64), shared=True) == 0.0


def _budgets(retrieval, user_ids: np.ndarray, k: int, mode: str = "equal") -> tuple[np.ndarray, np.ndarray]:
    """Each served user's queries: (queries per user, each query's budget); a fallback user has one."""
    lengths, _, weights = retrieval.profile.of(user_ids)
    q_lengths = np.where(lengths == 0, 1, lengths)
    q_weights = np.concatenate(
        [w if n else np.ones(1) for n, w in zip(lengths, np.split(weights, np.cumsum(lengths)[:-1]))]
    )
    return q_lengths, split_budget(q_lengths, q_weights, k, mode)


def test_budget_fetch_keeps_each_querys_exact_filtered_top_budget() -> None:
    retrieval, pins, users, tags, exclude = _served(InterestServing("pre", query_fetch="budget"))
    user_ids = np.arange(len(users))
    k = 12
    retrieval.retrieve(user_ids, k, exclude)
    lists, conditions, lengths = retrieval.queries
    q_lengths, budgets = _budgets(retrieval, user_ids, k)
    owners = np.repeat(user_ids, lengths)
    served_budgets = np.concatenate(
        [b for n, b in zip(lengths, np.split(budgets, np.cumsum(q_lengths)[:-1])) if n]
    )
    for row, (user, interest) in enumerate(zip(owners, conditions)):
        allowed = tags.contains_pairs(np.arange(len(pins)), np.full(len(pins), interest))
        allowed &= ~exclude.contains_pairs(np.full(len(pins), user), np.arange(len(pins)))
        found = [int(p) for p in lists[row] if p >= 0]
        assert found == _exact(pins @ users[user], allowed, int(served_budgets[row]))
    # every request fetches its budgets, K in all
    assert retrieval.last["serving/candidates_per_request"] == pytest.approx(k)


def test_k_fetch_costs_k_per_query_and_post_one_shared_search() -> None:
    k = 12
    retrieval, _, users, _, exclude = _served(InterestServing("pre"))
    user_ids = np.arange(len(users))
    retrieval.retrieve(user_ids, k, exclude)
    q_lengths, budgets = _budgets(retrieval, user_ids, k)
    assert retrieval.last["serving/candidates_per_request"] == pytest.approx(np.mean(q_lengths * k))
    # an unconditioned model's queries share one vector: the post filter needs one search of the
    # largest over-fetch (a fallback user: its plain top k)
    retrieval, _, _, _, _ = _served(InterestServing("post", post_overfetch=2.5))
    retrieval.retrieve(user_ids, k, exclude)
    lengths = retrieval.profile.counts(user_ids)
    per_user = [
        k if n == 0 else int(np.ceil(2.5 * b.max()))
        for n, b in zip(lengths, np.split(budgets, np.cumsum(q_lengths)[:-1]))
    ]
    assert retrieval.last["serving/candidates_per_request"] == pytest.approx(np.mean(per_user))


def test_one_query_arms_cost_k() -> None:
    retrieval, _, users, _, exclude = _served(InterestServing("union"))
    retrieval.retrieve(np.arange(len(users)), 9, exclude)
    assert retrieval.last["serving/candidates_per_request"] == 9.0


def test_an_unknown_query_fetch_names_its_key() -> None:
    with pytest.raises(ValueError, match=r"serving\.query_fetch must be one of k, budget"):
        InterestServing(query_fetch="all")
