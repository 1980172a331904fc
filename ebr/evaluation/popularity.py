"""The popularity baseline: every user gets the corpus's most engaged pins they have not engaged with."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ebr.data.csr import first_kept
from ebr.data.schema import engaged_pairs
from ebr.evaluation.task import EvalTask


def popularity_order(train: pd.DataFrame, corpus: np.ndarray) -> np.ndarray:
    """Corpus pin ids sorted by train-window engagement count, most engaged first (ties: lower id).

    Args:
        train: train-window events (clicks and repins are counted).
        corpus: sorted corpus pin ids.
    """
    _, pins = engaged_pairs(train, "train")
    position = np.searchsorted(corpus, pins)
    in_corpus = position < len(corpus)
    in_corpus[in_corpus] = corpus[position[in_corpus]] == pins[in_corpus]
    counts = np.bincount(position[in_corpus], minlength=len(corpus))
    # lexsort's last key is primary: count descending, then id ascending
    return corpus[np.lexsort((corpus, -counts))]


def popularity_ranking(train: pd.DataFrame, task: EvalTask, k: int) -> np.ndarray:
    """Top-k popular corpus pins per evaluated user, minus the user's excluded pins.

    Args:
        train: train-window events.
        task: the evaluation task (its corpus and exclusions are used).
        k: results per user.

    Returns:
        (len(task.user_ids), k) int64 pin ids, -1 padded when the corpus runs out.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    order = popularity_order(train, task.corpus)
    n_users = len(task.user_ids)
    extra = int(task.exclude.lengths().max()) if task.exclude is not None and n_users else 0
    head = order[: k + extra]
    candidates = np.broadcast_to(head, (n_users, len(head)))
    keep = np.ones(candidates.shape, dtype=bool)
    if task.exclude is not None:
        keep = ~task.exclude.contains(candidates)
    columns, valid = first_kept(keep, k)
    if len(head) == 0:
        return np.full((n_users, k), -1, dtype=np.int64)
    return np.where(valid, head[np.minimum(columns, len(head) - 1)], -1).astype(np.int64)
