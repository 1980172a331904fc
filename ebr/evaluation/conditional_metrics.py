"""Conditional retrieval's metrics (docs/conditional.md): topic match, per-interest hit rate and
recall, each split by users with one interest and with several.

Users' served interests come as (lengths, interest ids) row after row (ebr.serving.interests),
pins' interest tags as a Csr of pin -> sorted interest ids. Scores rankings; never builds them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ebr.data.csr import Csr, rows_of_values
from ebr.data.schema import GroundTruth
from ebr.evaluation.metrics import check_ks
from ebr.evaluation.simulation import SimulationConfig, simulate_online
from ebr.evaluation.task import EvalTask

GROUPS = {"single_interest": lambda n: n == 1, "multi_interest": lambda n: n > 1}


def topic_match(
    lists: np.ndarray, conditions: np.ndarray, tags: Csr, ks: Sequence[int], lengths: np.ndarray
) -> dict[str, float]:
    """`topic_match@K`: the share of a query's top K pins tagged with its condition interest.

    Averaged over queries (one per user and served interest) with at least one result, overall and
    split by users with one interest and with several (`topic_match@K/single_interest`, ...).

    Args:
        lists: (Q, C) ranked pin ids per query, -1 padded (for a plain model, its one list repeated
            for each of the user's interests).
        conditions: (Q,) each query's interest.
        tags: pin -> interest tags.
        ks: cut-offs (each <= C).
        lengths: queries per user, so that the queries are row after row per user (sum = Q).
    """
    ks = check_ks(ks)
    lists = np.asarray(lists, dtype=np.int64)
    conditions = np.asarray(conditions, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    if lists.ndim != 2 or lists.shape[0] != len(conditions) or int(lengths.sum()) != len(conditions):
        raise ValueError(
            f"topic_match: {lists.shape} lists, {len(conditions)} conditions, {int(lengths.sum())} queries"
        )
    if len(conditions) == 0:
        return {}
    group_size = np.repeat(lengths, lengths)
    real = lists >= 0
    matched = tags.contains_pairs(np.maximum(lists, 0), conditions[:, None]) & real
    metrics: dict[str, float] = {}
    for k in ks:
        if k > lists.shape[1]:
            raise ValueError(f"topic_match@{k}: the lists hold {lists.shape[1]} results")
        found = real[:, :k].sum(axis=1)
        share = matched[:, :k].sum(axis=1) / np.maximum(found, 1)
        scored = found > 0
        metrics[f"topic_match@{k}"] = _mean(share[scored])
        for name, member in GROUPS.items():
            metrics[f"topic_match@{k}/{name}"] = _mean(share[scored & member(group_size)])
    return _defined(metrics)


def interest_metrics(
    retrieved: np.ndarray,
    relevant: Csr,
    lengths: np.ndarray,
    interests: np.ndarray,
    tags: Csr,
    k: int = 100,
) -> dict[str, float]:
    """Per-interest offline metrics of a ranking.

    - `filtered_hr@K`: over (user, served interest) pairs with a relevant pin tagged with the
      interest, the share whose top K holds one (also `/top_interest`, `/other_interests`);
    - `recall@K/top_interest`, `recall@K/other_interests`: recall of each user's relevant pins
      tagged with their top interest, and of the others, averaged over users that have such pins;
    - `recall@K/single_interest`, `recall@K/multi_interest`, `hr@K/...`: the usual recall and hit
      rate over users with one served interest and with several (none: not in either group).

    Args:
        retrieved: (M, >= k) ranked pin ids, -1 padded.
        relevant: per user, the relevant pins (non-empty rows).
        lengths: served interests per user (M,).
        interests: their ids, row after row, best first.
        tags: pin -> interest tags.
        k: the cut-off.
    """
    retrieved = np.asarray(retrieved, dtype=np.int64)[:, :k]
    lengths = np.asarray(lengths, dtype=np.int64)
    interests = np.asarray(interests, dtype=np.int64)
    n_users = relevant.n_rows
    if retrieved.shape[0] != n_users or len(lengths) != n_users:
        raise ValueError(
            f"interest_metrics: {retrieved.shape[0]} rankings, {len(lengths)} profiles, {n_users} users"
        )
    # every relevant (user, pin) pair and whether the user's top k holds it
    pair_user = relevant.row_of_value()
    pair_pin = relevant.values
    real = retrieved >= 0
    hit = Csr.from_pairs(np.nonzero(real)[0], retrieved[real], n_users)
    pair_hit = hit.contains_pairs(pair_user, pair_pin)
    starts = np.cumsum(lengths) - lengths
    top = np.where(lengths > 0, interests[np.minimum(starts, max(len(interests) - 1, 0))], -1)
    metrics: dict[str, float] = {}
    # (user, interest) pairs and the relevant pins tagged with that interest
    pair_rank = np.arange(len(interests)) - starts[rows_of_values(lengths)]
    query_user = rows_of_values(lengths)
    served = Csr.from_pairs(query_user, interests, n_users)
    hr, rank_of = _filtered_hits(
        pair_user, pair_pin, pair_hit, served, tags, interests, query_user, pair_rank
    )
    metrics[f"filtered_hr@{k}"] = _mean(hr)
    metrics[f"filtered_hr@{k}/top_interest"] = _mean(hr[rank_of == 0])
    metrics[f"filtered_hr@{k}/other_interests"] = _mean(hr[rank_of > 0])
    on_top = tags.contains_pairs(pair_pin, top[pair_user]) & (top[pair_user] >= 0)
    for name, part in (("top_interest", on_top), ("other_interests", ~on_top & (top[pair_user] >= 0))):
        metrics[f"recall@{k}/{name}"] = _user_recall(pair_user[part], pair_hit[part], n_users)
    per_user_recall = np.bincount(pair_user, weights=pair_hit, minlength=n_users) / np.maximum(
        relevant.lengths(), 1
    )
    per_user_hit = np.bincount(pair_user, weights=pair_hit, minlength=n_users) > 0
    for name, member in GROUPS.items():
        users = member(lengths)
        metrics[f"recall@{k}/{name}"] = _mean(per_user_recall[users])
        metrics[f"hr@{k}/{name}"] = _mean(per_user_hit[users].astype(np.float64))
        metrics[f"users/{name}"] = float(users.sum())
    return _defined(metrics)


def _filtered_hits(
    pair_user: np.ndarray,
    pair_pin: np.ndarray,
    pair_hit: np.ndarray,
    served: Csr,
    tags: Csr,
    interests: np.ndarray,
    query_user: np.ndarray,
    query_rank: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per (user, served interest) with a relevant pin of that interest: hit or not, and the rank."""
    # expand relevant pairs by their pins' tags, keep the tags the user is served
    lengths, index = tags.take(pair_pin)
    user = np.repeat(pair_user, lengths)
    interest = tags.values[index]
    hit = np.repeat(pair_hit, lengths)
    keep = served.contains_pairs(user, interest)
    user, interest, hit = user[keep], interest[keep], hit[keep]
    if len(user) == 0:
        return np.zeros(0), np.zeros(0, np.int64)
    width = int(max(interests.max(initial=0), interest.max(initial=0))) + 1
    key = user * width + interest
    unique, inverse = np.unique(key, return_inverse=True)
    any_hit = np.bincount(inverse, weights=hit.astype(np.float64), minlength=len(unique)) > 0
    rank_key = query_user * width + interests
    return any_hit.astype(np.float64), _lookup(rank_key, query_rank, unique)


def _lookup(keys: np.ndarray, values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    order = np.argsort(keys, kind="stable")
    return values[order[np.searchsorted(keys[order], wanted)]]


def _user_recall(users: np.ndarray, hits: np.ndarray, n_users: int) -> float:
    """Mean over users with any pair of their share of pairs hit."""
    count = np.bincount(users, minlength=n_users)
    found = np.bincount(users, weights=hits.astype(np.float64), minlength=n_users)
    has = count > 0
    return _mean(found[has] / count[has])


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def _defined(metrics: dict[str, float]) -> dict[str, float]:
    """The metrics with a value (a group without users has none: its key is left out)."""
    return {key: value for key, value in metrics.items() if not np.isnan(value)}


def by_interest(
    task: EvalTask, retrieved: np.ndarray, served: tuple[np.ndarray, np.ndarray], tags: Csr, k: int
) -> dict[str, float]:
    """`interest_metrics` of a job's ranking of its evaluation task (hits per pin).

    Args:
        task: the evaluation task (its `label_of` must be None).
        retrieved: (len(task.user_ids), >= k) ranked pin ids.
        served: (lengths, interest ids) of the task's users.
        tags: pin -> interest tags.
        k: the cut-off.
    """
    if task.label_of is not None:
        raise ValueError("serving.interest_metrics scores hits per pin: set eval.hit_level=pin")
    lengths, interests = served
    return interest_metrics(retrieved, task.relevant, lengths, interests, tags, k)


def simulated_by_group(
    truth: GroundTruth,
    population: EvalTask,
    retrieved: np.ndarray,
    simulation: SimulationConfig,
    lengths: np.ndarray,
) -> dict[str, float]:
    """The simulated online metrics of the users with one served interest and with several
    (`sim/<metric>/single_interest`, `.../multi_interest`): the same draws as the whole population's,
    which are hashed per user.

    Args:
        truth: the world's engagement model.
        population: the simulated users.
        retrieved: (M, >= candidates) what the retriever returned for them.
        simulation: the funnel's settings.
        lengths: served interests per simulated user.
    """
    metrics: dict[str, float] = {}
    for name, member in GROUPS.items():
        users = member(np.asarray(lengths))
        if not users.any():
            continue
        part = simulate_online(
            truth, population.user_ids[users], retrieved[users], float(population.timestamp), simulation
        )
        metrics.update({f"{key}/{name}": value for key, value in part.items()})
    return metrics
