"""Search results past each query's exclusions (a user's training-window pins): how much a search
must fetch so that k results survive, and the filter itself. `ebr.serving.index.ItemIndex.search`
runs every search through `top_k_excluding`."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ebr.data.csr import Csr, first_kept

__all__ = ["top_k_excluding"]


def top_k_excluding(
    search: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]],
    rows: np.ndarray,
    k: int,
    limit: int,
    exclude: Csr | None,
    per_query: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """The k best results of each query row that its exclusions leave, fetching enough past them.

    An exact scan costs the same whatever it fetches and loses its matrix-multiply speed on small
    groups, so without `per_query` the rows make one call, fetching k plus the longest exclusion
    list among them. An approximate search costs about in proportion to what it fetches (an IVF-PQ
    search re-ranks a multiple of it), and over-fetching every query by the longest list costs it
    the heaviest user's fetch (on the xl world's test users the longest list in a batch of 4,096
    is ~140 while the median is 5). With `per_query` every row first fetches k plus a quarter of k
    in one call; the few rows whose exclusions then leave fewer than k (0.4% of the xl world's test
    users) are searched again, fetching k plus their own exclusions rounded up to a quarter of k so
    that they make a few calls, not one per length. Splitting every batch by exclusion length
    instead costs faiss's efficiency on the small groups: on the xl world's test queries
    (IVF1024,PQ64x4fsr,RFlat, nprobe 48) the calls of one such split searched 19,100 queries/s
    where one call per batch fetching k + k/10 searched 21,400.
    A row's results depend on its own query and exclusions only, never on the other rows.

    Args:
        search: (rows, fetch) -> (item ids, scores) of the `fetch` best results of those query
            rows, best first, id -1 where there are fewer.
        rows: the query rows to answer (rows of `exclude`).
        k: results wanted per row.
        limit: the most a search can return (the searched set's size).
        exclude: per query row, ids that must not be returned (None: no exclusions).
        per_query: approximate search: fetch per row as above (else one call for all rows).

    Returns:
        (ids (len(rows), k) int64, scores (len(rows), k) float32), id -1 and score -inf past the
        results found.
    """
    if len(rows) == 0 or limit < 1:
        return np.full((len(rows), k), -1, dtype=np.int64), np.full((len(rows), k), -np.inf, dtype=np.float32)
    lengths = np.zeros(len(rows), dtype=np.int64) if exclude is None else exclude.lengths()[rows]
    # what guarantees k survivors (or every item the search can return)
    needed = np.minimum(k + lengths, limit)
    step = -(-k // 4)
    # the same first fetch for every row with exclusions, whatever the other rows hold
    first = int(min(k + step, limit) if per_query and exclude is not None else needed.max())
    ids, scores = _first_k(*search(rows, first), k, exclude, rows)
    again = np.flatnonzero((needed > first) & (ids[:, -1] < 0))
    if len(again):
        fetch = np.minimum(k + -(-lengths[again] // step) * step, limit)
        for value in np.unique(fetch):
            positions = again[fetch == value]
            ids[positions], scores[positions] = _first_k(
                *search(rows[positions], int(value)), k, exclude, rows[positions]
            )
    return ids, scores


def _first_k(
    ids: np.ndarray, scores: np.ndarray, k: int, exclude: Csr | None, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The first k results of each row that are real (id >= 0) and not excluded for its query row."""
    fetch = ids.shape[1]
    keep = ids >= 0
    if exclude is not None:
        keep &= ~exclude.contains_pairs(rows[:, None], ids)
    columns, valid = first_kept(keep, k)
    columns = np.minimum(columns, fetch - 1)
    out_ids = np.where(valid, np.take_along_axis(ids, columns, axis=1), -1)
    out_scores = np.where(valid, np.take_along_axis(scores, columns, axis=1), -np.inf)
    return out_ids.astype(np.int64), out_scores.astype(np.float32)
