"""Conditional retrieval's serving plan: each user's top interests, their budgets, and the merge.

A user is served with one query per interest among their top `serving.n_interests` (followed: the
users' `interests` feature; inferred: the interest tags of their fitted-window engagements), each
query with a share of the K results (`equal`, or `proportional` to the interest weights), and the
per-interest results merged without duplicates into one list of K (docs/conditional.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from ebr.data.csr import Csr, Ragged, offsets_from_lengths, rows_of_values
from ebr.data.schema import InteractionData

INTEREST_FILTERS = ("none", "post", "pre", "union")
BUDGETS = ("equal", "proportional")
INTERESTS_FROM = ("followed", "inferred")
PRE_FILTER_METHODS = ("sub_index", "selector")
QUERY_FETCHES = ("k", "budget")
USER_INTEREST_FEATURE = "interests"
PIN_INTEREST_FEATURE = "interest"


@dataclass(frozen=True)
class InterestServing:
    """The `serving.*` keys of interest-aware serving (`ebr.config.ServingSchema`).

    Args:
        interest_filter: `none`, `post` (over-fetch from the shared index, keep the interest's
            pins), `pre` (search only the interest's pins) or `union` (one plain query restricted to
            the pins of any of the user's interests).
        n_interests: interests served per user (its top ones by weight).
        interest_budget: `equal` or `proportional` shares of K per interest.
        interests_from: `followed` (the users' interest feature) or `inferred` (training history).
        post_overfetch: the post filter fetches this many times a query's budget.
        pre_filter_method: `sub_index` (an exact index over the interest's pins) or `selector`
            (faiss's IDSelectorBitmap over the shared index).
        interest_metrics: also score `topic_match@K`, per-interest and per-user-group metrics.
        query_fetch: what a per-interest query without the post filter fetches: `k` (K results,
            the merge fills short or duplicate slots from them) or `budget` (its budget only: K
            candidates per request in all, the serving cost of one plain query).
    """

    interest_filter: str = "none"
    n_interests: int = 3
    interest_budget: str = "equal"
    interests_from: str = "followed"
    post_overfetch: float = 4.0
    pre_filter_method: str = "sub_index"
    interest_metrics: bool = False
    query_fetch: str = "k"

    def __post_init__(self) -> None:
        for key, value, allowed in (
            ("interest_filter", self.interest_filter, INTEREST_FILTERS),
            ("interest_budget", self.interest_budget, BUDGETS),
            ("interests_from", self.interests_from, INTERESTS_FROM),
            ("pre_filter_method", self.pre_filter_method, PRE_FILTER_METHODS),
            ("query_fetch", self.query_fetch, QUERY_FETCHES),
        ):
            if value not in allowed:
                raise ValueError(f"serving.{key} must be one of {', '.join(allowed)}, got {value!r}")
        if self.n_interests < 1:
            raise ValueError(f"serving.n_interests must be at least 1, got {self.n_interests}")
        if not 1.0 <= self.post_overfetch < math.inf:
            raise ValueError(
                f"serving.post_overfetch must be a finite number >= 1, got {self.post_overfetch}"
            )

    @classmethod
    def of(cls, serving: Mapping[str, Any]) -> InterestServing:
        """The settings from the `serving` node (its other keys are ignored).

        Args:
            serving: the `serving` config node as a mapping.
        """
        keys = [setting.name for setting in fields(cls)]
        return cls(**{key: serving[key] for key in keys if key in serving})

    def engaged(self, conditioned: bool) -> bool:
        """Whether serving goes through the interest plan (else: today's plain top K).

        Args:
            conditioned: the model has a condition input.
        """
        return conditioned or self.interest_filter != "none" or self.interest_metrics


@dataclass(frozen=True)
class InterestProfile:
    """Every user's served interests, best first, with weights summing to 1 per user.

    Args:
        interests: (n_users rows) interest ids per user, by weight descending (ties: lower id).
        weights: float64 weights aligned with `interests.values`.
    """

    interests: Ragged
    weights: np.ndarray

    def of(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lengths, interest ids, weights) of the given users, row after row."""
        lengths, index = self.interests.take(np.asarray(users, dtype=np.int64))
        return lengths, self.interests.values[index], self.weights[index]

    def counts(self, users: np.ndarray) -> np.ndarray:
        """Interests served per user."""
        return self.of(users)[0]

    def top(self, users: np.ndarray) -> np.ndarray:
        """Each user's top interest, -1 for a user without interests."""
        lengths, values, _ = self.of(users)
        top = np.full(len(lengths), -1, dtype=np.int64)
        has = lengths > 0
        top[has] = values[(np.cumsum(lengths) - lengths)[has]]
        return top


def interest_profile(
    data: InteractionData, train: pd.DataFrame, settings: InterestServing
) -> InterestProfile:
    """Each user's top `settings.n_interests` interests, followed or inferred from `train`.

    Args:
        data: the data set (the users' interest feature, the pins' interest tags).
        train: the fitted window's engagement rows (`user`, `pin`), for `inferred`.
        settings: the serving keys.

    Raises:
        ValueError: `followed` on data whose users have no interest feature, `inferred` on data
            whose pins have no interest tags (naming `serving.interests_from`).
    """
    n_users = data.users.n_rows
    if settings.interests_from == "followed":
        if USER_INTEREST_FEATURE not in data.users.categorical:
            raise ValueError(
                f"serving.interests_from=followed: {data.name} users have no {USER_INTEREST_FEATURE!r}"
                " feature; use serving.interests_from=inferred"
            )
        feature = data.users.categorical[USER_INTEREST_FEATURE]
        rows = feature.row_of_value()
        own = np.ones(len(feature.values)) if feature.weights is None else feature.weights
        users, interests, weights = rows, feature.values, np.asarray(own, dtype=np.float64)
    else:
        tags = pin_tags(data, "serving.interests_from=inferred")
        lengths, index = tags.take(train["pin"].to_numpy(np.int64))
        users = np.repeat(train["user"].to_numpy(np.int64), lengths)
        interests = tags.values[index]
        # one engagement spreads one unit over its pin's tags
        weights = np.repeat(1.0 / np.maximum(lengths, 1), lengths)
    return _top_interests(users, interests, weights, n_users, settings.n_interests)


def _top_interests(
    users: np.ndarray, interests: np.ndarray, weights: np.ndarray, n_users: int, n: int
) -> InterestProfile:
    """Sum weights per (user, interest), keep each user's n largest, normalise to sum 1."""
    frame = pd.DataFrame({"user": users, "interest": interests, "weight": weights})
    summed = frame.groupby(["user", "interest"], sort=False)["weight"].sum().reset_index()
    summed = summed[summed["weight"] > 0]
    summed = summed.sort_values(["user", "weight", "interest"], ascending=[True, False, True])
    summed = summed[summed.groupby("user").cumcount() < n]
    user = summed["user"].to_numpy(np.int64)
    lengths = np.bincount(user, minlength=n_users)
    weight = summed["weight"].to_numpy(np.float64)
    totals = np.bincount(user, weights=weight, minlength=n_users)
    return InterestProfile(
        Ragged(offsets_from_lengths(lengths), summed["interest"].to_numpy(np.int64)),
        weight / totals[user],
    )


def pin_tags(data: InteractionData, key: str = "serving.interest_filter") -> Csr:
    """Every pin's interest tags as a sorted set per pin.

    Args:
        data: the data set.
        key: the setting that needs them, for the error.
    """
    if PIN_INTEREST_FEATURE not in data.pins.categorical:
        raise ValueError(f"{key}: {data.name} pins have no {PIN_INTEREST_FEATURE!r} tags")
    feature = data.pins.categorical[PIN_INTEREST_FEATURE]
    return Csr.from_pairs(feature.row_of_value(), feature.values, feature.n_rows)


def pins_by_interest(tags: Csr, corpus: np.ndarray) -> dict[int, np.ndarray]:
    """Interest id -> the sorted corpus pins tagged with it.

    Args:
        tags: `pin_tags`.
        corpus: sorted pin ids.
    """
    corpus = np.asarray(corpus, dtype=np.int64)
    lengths, index = tags.take(corpus)
    pins, interests = np.repeat(corpus, lengths), tags.values[index]
    order = np.lexsort((pins, interests))
    pins, interests = pins[order], interests[order]
    cuts = np.flatnonzero(np.diff(interests)) + 1
    return {
        int(group[0]): members
        for group, members in zip(np.split(interests, cuts), np.split(pins, cuts))
        if len(group)
    }


def split_budget(lengths: np.ndarray, weights: np.ndarray, k: int, mode: str) -> np.ndarray:
    """Each (user, interest) query's share of the user's K results; a user's shares sum to K.

    `equal`: K // n each, the remainder one more to each of the top interests. `proportional`:
    K x weight, rounded by largest remainder (ties to the higher-weighted interest).

    Args:
        lengths: interests per user (0: no query; that user is served otherwise).
        weights: the interests' weights, row after row (each user's sum to 1).
        k: results per user.
        mode: `equal` or `proportional`.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    row = rows_of_values(lengths)
    rank = np.arange(len(row)) - (np.cumsum(lengths) - lengths)[row]
    n = lengths[row]
    if mode == "equal":
        return (k // n + (rank < k % n)).astype(np.int64)
    if mode != "proportional":
        raise ValueError(f"serving.interest_budget must be one of {', '.join(BUDGETS)}, got {mode!r}")
    exact = np.asarray(weights, dtype=np.float64) * k
    base = np.floor(exact).astype(np.int64)
    left = k - np.bincount(row, weights=base, minlength=len(lengths)).astype(np.int64)
    # the largest remainders get one more: order each user's queries by remainder descending
    order = np.lexsort((rank, -(exact - base), row))
    place = np.empty(len(row), dtype=np.int64)
    place[order] = np.arange(len(row)) - (np.cumsum(lengths) - lengths)[row[order]]
    return base + (place < left[row])


def candidates_per_request(fetches: np.ndarray, lengths: np.ndarray, shared: bool) -> float:
    """Mean candidates the index returns per user request (`serving/candidates_per_request`).

    Args:
        fetches: (Q,) results each query asks the index for, queries row after row per user.
        lengths: queries per user (each >= 1).
        shared: the user's queries are one vector (an unconditioned model without a pre filter):
            one search of the largest fetch serves them all; else each query is its own search.
    """
    fetches = np.asarray(fetches, dtype=np.float64)
    lengths = np.asarray(lengths, dtype=np.int64)
    if len(lengths) == 0:
        return 0.0
    starts = np.cumsum(lengths) - lengths
    per_user = np.maximum.reduceat(fetches, starts) if shared else np.add.reduceat(fetches, starts)
    return float(per_user.mean())


def merge_lists(
    ids: np.ndarray, scores: np.ndarray, lengths: np.ndarray, budgets: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge each user's per-interest results into one list of k distinct pins, best score first.

    Each query first contributes up to its budget of pins not taken yet, in its own order; slots
    left (a query with fewer results than its budget, or duplicates across interests) are then
    filled from the queries' remaining results in turn. The merged list is ordered by score.

    Args:
        ids: (Q, C) ranked pin ids per query, -1 padded; queries row after row per user.
        scores: (Q, C) their scores.
        lengths: queries per user (each >= 1).
        budgets: (Q,) each query's share of k.
        k: results per user.

    Returns:
        (merged ids (U, k), per slot the query row it came from, -1 for padding).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    out = np.full((len(lengths), k), -1, dtype=np.int64)
    source = np.full((len(lengths), k), -1, dtype=np.int64)
    for user, (start, n) in enumerate(zip(starts.tolist(), lengths.tolist())):
        taken: dict[int, tuple[float, int]] = {}
        cursor = [0] * n
        rows = [ids[start + q] for q in range(n)]
        for q in range(n):
            want, row = int(budgets[start + q]), rows[q]
            got = 0
            while got < want and cursor[q] < len(row):
                pin = int(row[cursor[q]])
                if pin >= 0 and pin not in taken:
                    taken[pin] = (float(scores[start + q, cursor[q]]), start + q)
                    got += 1
                cursor[q] += 1
        active = True
        while len(taken) < k and active:
            active = False
            for q in range(n):
                row = rows[q]
                while cursor[q] < len(row) and (row[cursor[q]] < 0 or int(row[cursor[q]]) in taken):
                    cursor[q] += 1
                if cursor[q] < len(row) and len(taken) < k:
                    taken[int(row[cursor[q]])] = (float(scores[start + q, cursor[q]]), start + q)
                    cursor[q] += 1
                    active = True
        ranked = sorted(taken.items(), key=lambda item: -item[1][0])[:k]
        out[user, : len(ranked)] = [pin for pin, _ in ranked]
        source[user, : len(ranked)] = [query for _, (_, query) in ranked]
    return out, source
