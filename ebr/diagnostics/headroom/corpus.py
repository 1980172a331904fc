"""The headroom study's corpus rows: remapping near-duplicates, and time-decayed corpus budgets."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ebr.diagnostics.headroom.rankers import CEILING, DEPTH, Variants, World, evaluate, top_k
from ebr.evaluation.corpus_metrics import share_in_corpus
from ebr.evaluation.metrics import retrieval_metrics
from ebr.evaluation.task import as_labels, by_label
from ebr.serving.corpus import CorpusPolicy
from ebr.serving.signatures import COARSE, freshest_members

# corpus budget of the time-decay row, as a share of all pins (scripts/headroom.py --corpus-share)
CORPUS_SHARE = 0.1
HALF_LIVES_DAYS = (1.0, 2.0, 3.0, 7.0)
# the plain sum's shorter window (corpus=sum_7d)
SHORT_WINDOW_DAYS = 7.0


def representatives(world: World, policy: str) -> np.ndarray:
    """Per pin, the pin that stands for its coarse signature: "canonical" (earliest) or "freshest".

    Args:
        world: the world.
        policy: "canonical" or "freshest" (at the task's serving time).
    """
    meta = world.data.pins.meta
    if policy == "canonical":
        return meta["canonical_pin"]
    return freshest_members(meta[COARSE], meta["created_at"], world.task.timestamp)


def _remapped(world: World, name: str, policy: str | None) -> dict[str, float]:
    """The ideal ranker over the corpus remapped by `policy` (None: as is); recall per signature."""
    key = f"remapping/{name}"
    if key not in world.measured:
        signature = world.data.pins.meta["coarse_signature"]
        pool = world.corpus if policy is None else np.unique(representatives(world, policy)[world.corpus])
        metrics = evaluate(world, lambda task: top_k(world.truth, task, pool))
        retrieved = as_labels(top_k(world.truth, world.task, pool), signature)
        by_signature = by_label(world.task.relevant, signature)
        metrics.update(retrieval_metrics(retrieved, by_signature, [DEPTH]))
        metrics[CEILING] = share_in_corpus(by_signature, np.unique(signature[pool]))
        world.measured[key] = metrics
    return world.measured[key]


def decayed_corpus(
    world: World, half_life_days: float | None, share: float = CORPUS_SHARE, window_days: float | None = None
) -> np.ndarray:
    """The top `share` of pins by training-window engagements, each weighted 2^(-age / half-life)
    (the package's `corpus=time_decay`; with no half-life `corpus=sum` over the last `window_days`,
    or the whole window when None).

    Args:
        world: the world.
        half_life_days: the decay's half-life (None: a plain sum).
        share: the budget, a share of all pins.
        window_days: the plain sum's window (None: the whole training window).
    """
    if half_life_days is None:
        policy = CorpusPolicy(scoring="sum", window_days=window_days, size=share)
    else:
        policy = CorpusPolicy(scoring="time_decay", half_life_days=half_life_days, size=share)
    return policy.build(world.data.pins, world.split.train, world.task.timestamp).pins


def corpus_variants(kind: str, share: float = CORPUS_SHARE) -> Callable[[World], Variants]:
    """Each corpus policy with the ideal ranker over it (the time-decay row's at a budget of
    `share` of the pins).

    Args:
        kind: "remapping" or "time_decay".
        share: the time-decay row's budget, a share of all pins.
    """

    def variants(world: World) -> Variants:
        truth = world.truth
        if kind == "remapping":
            return {
                name: _remapped(world, name, policy)
                for name, policy in (
                    ("no remapping", None),
                    ("canonical", "canonical"),
                    ("freshest", "freshest"),
                )
            }
        policies: dict[str, tuple[float | None, float | None]] = {
            "plain sum": (None, None),
            f"sum {SHORT_WINDOW_DAYS:g} d": (None, SHORT_WINDOW_DAYS),
            **{f"half-life {h:g} d": (h, None) for h in HALF_LIVES_DAYS},
        }
        out = {}
        for name, (half_life, window_days) in policies.items():
            pool = decayed_corpus(world, half_life, share, window_days)
            metrics = evaluate(world, lambda task, p=pool: top_k(truth, task, p))
            out[name] = {**metrics, CEILING: share_in_corpus(world.task.relevant, pool)}
        return out

    return variants
