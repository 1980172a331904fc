"""Interest-aware serving of a two-tower model: per-interest queries, interest filters, one merged list.

`InterestRetrieval.retrieve` serves every user as `serving.*` says (ebr.serving.interests):

- plain (`interest_filter=none`, unconditioned model): one query per user, the plain top K;
- `union`: one plain query per user restricted to the pins of any of the user's interests;
- otherwise one query per (user, interest): the interest-conditioned user vector (a conditional
  model) or the same plain vector for each interest (an unconditioned one), unfiltered (`none`),
  filtered after an over-fetch from the shared index (`post`), or restricted to the interest's
  pins in the search itself (`pre`: an exact sub-index, or faiss's IDSelectorBitmap on the shared
  index); each query gets its budget and the results are merged into K distinct pins.

A user without interests is served by one unconditioned query (the model's "no interest" row for
a conditional model), counted in `cond/fallback_users`. Each call's figures (shortfalls,
fallbacks) are kept in `last`, and each query's results with its condition in `queries` (what
`topic_match@K` scores, ebr.evaluation.conditional_metrics), for the caller's metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import torch

from ebr.data.batching import with_condition
from ebr.data.csr import Csr
from ebr.data.schema import InteractionData
from ebr.models.conditioning import check_conditions
from ebr.serving.index import IndexConfig, selector_parameters
from ebr.serving.interests import (
    InterestProfile,
    InterestServing,
    candidates_per_request,
    interest_profile,
    merge_lists,
    pin_tags,
    pins_by_interest,
    split_budget,
)
from ebr.serving.score_terms import ScoreColumns
from ebr.serving.service import RetrievalService

# encodes (users, condition interests) into query embeddings (without score-term columns)
ConditionedEncoder = Callable[[np.ndarray, np.ndarray], np.ndarray]


class InterestRetrieval:
    """A served model with the interest plan on top of its shared index.

    Args:
        service: the model served over the corpus (its index, score terms, plain user encoder).
        profile: every user's served interests.
        tags: every pin's interest tags.
        settings: the `serving.*` keys.
        encode: the conditional model's encoder, or None for an unconditioned model.
        no_interest: the conditional model's "no interest" row (fallback condition).
    """

    def __init__(
        self,
        service: RetrievalService,
        profile: InterestProfile,
        tags: Csr,
        settings: InterestServing,
        encode: ConditionedEncoder | None = None,
        no_interest: int = -1,
    ) -> None:
        self.service = service
        self.profile = profile
        self.tags = tags
        self.settings = settings
        self.encode = encode
        self.no_interest = no_interest
        self.by_interest = pins_by_interest(tags, service.corpus)
        self.last: dict[str, float] = {}
        self.first_queries: np.ndarray | None = None
        # (per-query ranked ids, their condition interests, queries per user) of the last call
        self.queries: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @classmethod
    def from_artifact(
        cls,
        path: str | Path,
        data: InteractionData,
        train: pd.DataFrame,
        corpus: np.ndarray,
        index: IndexConfig,
        score_columns: ScoreColumns | None,
        settings: InterestServing,
        batch_size: int = 4096,
    ) -> InterestRetrieval:
        """The model saved at `path` served over `corpus` with the interest plan of `settings`.

        Args:
            path: the model file.
            data: the data set it is served on.
            train: the fitted window's engagements (for `serving.interests_from=inferred`).
            corpus: sorted pin ids the index holds.
            index: the faiss index configuration.
            score_columns: the active score terms over `corpus`.
            settings: the `serving.*` keys.
            batch_size: rows embedded per forward pass, queries per index call.
        """
        service = RetrievalService.from_artifact(
            path, data, corpus, index, score_columns, batch_size=batch_size, progress=False
        )
        model = service.model
        conditioning = getattr(model, "conditioning", None)
        encode, no_interest = None, -1
        if conditioning is not None:
            rows = int(conditioning["rows"])
            no_interest = rows - 1

            def encode(users: np.ndarray, conditions: np.ndarray) -> np.ndarray:
                conditions = check_conditions(conditions, rows)
                chunks = [np.zeros((0, model.output_dim), np.float32)]
                for start in range(0, len(users), batch_size):
                    stop = start + batch_size
                    inputs = with_condition(service.user_gatherer(users[start:stop]), conditions[start:stop])
                    with torch.no_grad():
                        chunks.append(model.user_tower(inputs.sparse, inputs.dense).float().numpy())
                return np.concatenate(chunks)

        profile = interest_profile(data, train, settings)
        return cls(service, profile, pin_tags(data), settings, encode, no_interest)

    def retrieve(self, users: np.ndarray, k: int, exclude: Csr | None) -> np.ndarray:
        """(len(users), k) merged pin ids, best first, -1 padded; figures in `self.last`.

        Args:
            users: user ids.
            k: results per user.
            exclude: per user, pins that must not be returned.
        """
        users = np.asarray(users, dtype=np.int64)
        started = time.perf_counter()
        lengths, interests, weights = self.profile.of(users)
        filter_ = self.settings.interest_filter
        per_interest = self.encode is not None or filter_ in ("post", "pre")
        fallback = lengths == 0
        self.last = {
            "cond/fallback_users": float(fallback.sum()),
            "cond/multi_interest_users": float((lengths > 1).sum()),
        }
        if not per_interest:
            merged = self._one_query(users, k, exclude, lengths, interests)
        else:
            merged = self._per_interest(users, k, exclude, lengths, interests, weights)
        self.last["cond/serving_seconds"] = time.perf_counter() - started
        return merged

    def sample_queries(self, users: np.ndarray) -> np.ndarray:
        """One served query per user, for `index=auto` to measure on: a conditioned model's query
        for the user's first interest (no-interest condition without one), else the plain vector.

        Args:
            users: user ids.
        """
        users = np.asarray(users, dtype=np.int64)
        if self.encode is None:
            return self.service.user_vectors(users)
        lengths, interests, _ = self.profile.of(users)
        first = np.full(len(users), -1, dtype=np.int64)
        first[lengths > 0] = interests[(np.cumsum(lengths) - lengths)[lengths > 0]]
        return self._queries(users, users, np.arange(len(users)), first)

    # -- one query per user: plain or union-filtered ----------------------------------------------

    def _one_query(
        self, users: np.ndarray, k: int, exclude: Csr | None, lengths: np.ndarray, interests: np.ndarray
    ) -> np.ndarray:
        queries = self.service.user_vectors(users)
        self.first_queries = queries
        allow = None
        if self.settings.interest_filter == "union":
            rows = np.repeat(np.arange(len(users)), lengths)
            pins = [self.by_interest.get(int(e), np.zeros(0, np.int64)) for e in interests]
            counts = np.asarray([len(p) for p in pins], dtype=np.int64)
            pairs_rows = np.repeat(rows, counts)
            pairs_pins = np.concatenate(pins) if pins else np.zeros(0, np.int64)
            allow_set = Csr.from_pairs(pairs_rows, pairs_pins, len(users))
            # a user without interests is served unfiltered (counted as a fallback)
            plain = self.service.search(queries, k, exclude)
            filtered = self.service.search(queries, k, exclude, allow=allow_set)
            merged = np.where((lengths == 0)[:, None], plain, filtered)
        else:
            merged = self.service.search(queries, k, exclude, allow=allow)
        # topic match of a plain list: against each of the user's interests in turn
        query_rows = np.repeat(np.arange(len(users)), lengths)
        self.queries = (merged[query_rows], interests, lengths)
        self.last["cond/short_users"] = float((merged < 0).any(axis=1).sum())
        self.last["serving/candidates_per_request"] = float(k)
        return merged

    # -- one query per (user, interest) -----------------------------------------------------------

    def _per_interest(
        self,
        users: np.ndarray,
        k: int,
        exclude: Csr | None,
        lengths: np.ndarray,
        interests: np.ndarray,
        weights: np.ndarray,
    ) -> np.ndarray:
        fallback = lengths == 0
        # a user without interests gets one query: the no-interest condition, or the plain vector
        q_lengths = np.where(fallback, 1, lengths)
        starts = np.cumsum(lengths) - lengths
        q_users = np.repeat(users, q_lengths)
        q_rows = np.repeat(np.arange(len(users)), q_lengths)
        q_interests = np.full(len(q_users), -1, dtype=np.int64)
        q_weights = np.ones(len(q_users))
        q_starts = np.cumsum(q_lengths) - q_lengths
        has = ~fallback
        take = np.concatenate(
            [np.arange(s, s + n) for s, n in zip(q_starts[has].tolist(), lengths[has].tolist())]
            or [np.zeros(0, np.int64)]
        ).astype(np.int64)
        source = np.concatenate(
            [np.arange(s, s + n) for s, n in zip(starts[has].tolist(), lengths[has].tolist())]
            or [np.zeros(0, np.int64)]
        ).astype(np.int64)
        q_interests[take], q_weights[take] = interests[source], weights[source]
        budgets = split_budget(q_lengths, q_weights, k, self.settings.interest_budget)
        queries = self._queries(users, q_users, q_rows, q_interests)
        first = q_starts
        self.first_queries = queries[first]
        q_exclude = _rows_of(exclude, q_rows)
        ids, scores = self._search(queries, k, q_exclude, q_interests, budgets)
        fetches = self._fetches(k, budgets, q_interests)
        if self.settings.query_fetch == "budget":
            beyond = np.arange(ids.shape[1])[None, :] >= np.minimum(fetches, budgets)[:, None]
            ids, scores = np.where(beyond, -1, ids), np.where(beyond, -np.inf, scores)
        shared = self.encode is None and self.settings.interest_filter != "pre"
        self.last["serving/candidates_per_request"] = candidates_per_request(fetches, q_lengths, shared)
        merged, _ = merge_lists(ids, scores, q_lengths, budgets, k)
        conditioned = q_interests >= 0
        self.queries = (ids[conditioned], q_interests[conditioned], lengths)
        self.last["cond/queries"] = float(len(q_users))
        self.last["cond/short_users"] = float((merged < 0).any(axis=1).sum())
        return merged

    def _queries(
        self, users: np.ndarray, q_users: np.ndarray, q_rows: np.ndarray, q_interests: np.ndarray
    ) -> np.ndarray:
        """Query vectors (with score-term columns) of every (user, interest) query."""
        if self.encode is None:
            return self.service.user_vectors(users)[q_rows]
        conditions = np.where(q_interests >= 0, q_interests, self.no_interest)
        embeddings = np.asarray(self.encode(q_users, conditions))
        return self.service.score_columns.extend_users(embeddings)

    def _fetches(self, k: int, budgets: np.ndarray, q_interests: np.ndarray) -> np.ndarray:
        """Results each query asks the index for: the post filter's over-fetch, else K or the budget."""
        if self.settings.interest_filter == "post":
            post = np.ceil(self.settings.post_overfetch * np.maximum(budgets, 1)).astype(np.int64)
            return np.where(q_interests >= 0, np.minimum(post, len(self.service.index)), k)
        if self.settings.query_fetch == "budget":
            return np.asarray(budgets, dtype=np.int64).copy()
        return np.full(len(budgets), k, dtype=np.int64)

    def _search(
        self,
        queries: np.ndarray,
        k: int,
        exclude: Csr | None,
        q_interests: np.ndarray,
        budgets: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(Q, k) ids and scores per query, filtered as `interest_filter` says."""
        filter_ = self.settings.interest_filter
        index = self.service.index
        if filter_ in ("none", "union"):
            return index.search(queries, k, exclude)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        plain = q_interests < 0
        if plain.any():
            rows = np.flatnonzero(plain)
            ids[rows], scores[rows] = index.search(queries[rows], k, _rows_of(exclude, rows))
        if filter_ == "post":
            return self._post(queries, k, exclude, q_interests, budgets, ids, scores)
        for interest in np.unique(q_interests[~plain]).tolist():
            rows = np.flatnonzero(q_interests == interest)
            allowed = self.by_interest.get(int(interest), np.zeros(0, np.int64))
            if len(allowed) == 0:
                continue
            excluded = _rows_of(exclude, rows)
            if self.settings.pre_filter_method == "sub_index":
                found = index.search(queries[rows], k, excluded, allow=allowed)
            else:
                found = selector_search(index, queries[rows], k, excluded, allowed)
            ids[rows], scores[rows] = found
        return ids, scores

    def _post(
        self,
        queries: np.ndarray,
        k: int,
        exclude: Csr | None,
        q_interests: np.ndarray,
        budgets: np.ndarray,
        ids: np.ndarray,
        scores: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fetch `post_overfetch` x each query's budget from the shared index; keep its interest's pins."""
        index = self.service.index
        conditioned = q_interests >= 0
        fetches = self._fetches(k, budgets, q_interests)
        short_queries, missing = 0, 0
        for fetch in np.unique(fetches[conditioned]).tolist():
            rows = np.flatnonzero(conditioned & (fetches == fetch))
            found, found_scores = index.search(queries[rows], int(fetch), _rows_of(exclude, rows))
            tagged = self.tags.contains_pairs(np.maximum(found, 0), q_interests[rows][:, None]) & (found >= 0)
            kept = min(k, found.shape[1])
            order = np.argsort(~tagged, axis=1, kind="stable")[:, :kept]
            valid = np.take_along_axis(tagged, order, axis=1)
            ids[rows, :kept] = np.where(valid, np.take_along_axis(found, order, axis=1), -1)
            scores[rows, :kept] = np.where(valid, np.take_along_axis(found_scores, order, axis=1), -np.inf)
            got = tagged.sum(axis=1)
            lack = np.maximum(budgets[rows] - got, 0)
            short_queries += int((lack > 0).sum())
            missing += int(lack.sum())
        n = max(int(conditioned.sum()), 1)
        self.last["cond/post_shortfall_queries"] = short_queries / n
        self.last["cond/post_shortfall_pins"] = missing / n
        return ids, scores


def selector_search(
    index, queries: np.ndarray, k: int, exclude: Csr | None, allowed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The top k of `allowed` pins on the shared faiss index through an IDSelectorBitmap.

    Args:
        index: the ItemIndex (its faiss index, item ids and vectors).
        queries: (M, d) query vectors.
        k: results per query.
        exclude: per query, pins that must not be returned.
        allowed: sorted pin ids the search may return.
    """
    position = np.searchsorted(index.item_ids, allowed) if _sorted(index.item_ids) else None
    if position is None:
        order = np.argsort(index.item_ids)
        position = order[np.searchsorted(index.item_ids[order], allowed)]
    bitmap = np.zeros(len(index), dtype=bool)
    bitmap[position] = True
    packed = np.packbits(bitmap, bitorder="little")
    selector = faiss.IDSelectorBitmap(len(index), faiss.swig_ptr(packed))
    params = selector_parameters(index.index, selector)
    most = 0 if exclude is None or exclude.n_rows == 0 else int(exclude.lengths().max())
    fetch = min(k + most, len(allowed))
    if fetch == 0:
        return np.full((len(queries), k), -1, np.int64), np.full((len(queries), k), -np.inf, np.float32)
    vectors = np.ascontiguousarray(queries, dtype=np.float32)
    scores, positions = index.index.search(vectors, fetch, params=params)
    ids = np.where(positions >= 0, index.item_ids[np.maximum(positions, 0)], -1)
    keep = ids >= 0
    if exclude is not None:
        keep &= ~exclude.contains_pairs(np.arange(len(queries))[:, None], ids)
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    valid = np.take_along_axis(keep, order, axis=1)
    out_ids = np.full((len(queries), k), -1, np.int64)
    out_scores = np.full((len(queries), k), -np.inf, np.float32)
    width = order.shape[1]
    out_ids[:, :width] = np.where(valid, np.take_along_axis(ids, order, axis=1), -1)
    out_scores[:, :width] = np.where(valid, np.take_along_axis(scores, order, axis=1), -np.inf)
    del packed  # the selector reads the bitmap during the search only
    return out_ids, out_scores


def _sorted(values: np.ndarray) -> bool:
    return bool(np.all(np.diff(values) > 0))


def _rows_of(exclude: Csr | None, rows: np.ndarray) -> Csr | None:
    """The exclusion lists of the given users, one per query row (rows may repeat)."""
    if exclude is None:
        return None
    lengths, index = exclude.take(np.asarray(rows, dtype=np.int64))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return Csr(offsets, exclude.values[index])
