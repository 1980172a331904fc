"""The headroom study's sequence rows: what the order of a user's engagements tells an ideal ranker.

With interest drift (`WorldConfig.interest_drift`, ebr.data.world.drift) a user's current interest
weights move towards the interest they are focused on at the time. The rankers here know every part
of the truth except those current weights, which they estimate from the training window's log:

- "recent k": the share of the user's last `k` engaged pins (distinct, by first engagement time)
  matching each of their interests;
- "random k": the same from `k` of their engaged pins drawn at random (the order-free control with
  the same amount of evidence: with the knob off the two are exchangeable, so its gain is ~0);
- "bag": from all their engaged pins, equally weighted (`features.history`'s order-free bag);
- "true score": the world's truth (the user's current weights known) and "long-run mix": the
  truth with the static profile weights (every user's drift unknown).

An estimate is `(counts + PRIOR * profile weights)`, normalised, so a user with no engagement keeps
the profile's weights (the `interests` feature every ranker may read).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pandas as pd

from ebr.data.csr import Ragged
from ebr.data.schema import CLICK
from ebr.data.world.drift import no_focus
from ebr.data.world.truth import SyntheticTruth
from ebr.diagnostics.headroom.rankers import Variants, World, evaluate, top_k

# the last (or random) engaged pins a recency ranker reads
RECENT_K = 5
# the profile weights count as this many engagements in an estimate
PRIOR = 1.0
# the random subset's seed
SUBSET_SEED = 0


def engaged_history(world: World) -> tuple[np.ndarray, np.ndarray]:
    """(users, pins) of the distinct engaged pairs before the serving time (training and validation
    windows), sorted by user, then by the pair's first engagement time (ties: pin id).

    Args:
        world: the world.
    """
    # everything logged before the serving time (train and validation windows), as under refit
    logged = pd.concat([world.split.train, world.split.val], ignore_index=True)
    frame = logged[logged["event"].to_numpy() >= CLICK][["user", "pin", "timestamp"]]
    frame = frame.sort_values(["user", "timestamp", "pin"], kind="stable").drop_duplicates(["user", "pin"])
    return frame["user"].to_numpy(np.int64), frame["pin"].to_numpy(np.int64)


def subset(users: np.ndarray, k: int | None, order: str, seed: int = SUBSET_SEED) -> np.ndarray:
    """Mask of each user's last `k` rows ("recent") or `k` random rows ("random"); None: all rows.

    Args:
        users: sorted user of each row (rows in time order within a user).
        k: rows kept per user (None: every row).
        order: "recent" or "random".
        seed: the random subset's seed.
    """
    if k is None:
        return np.ones(len(users), dtype=bool)
    starts = np.searchsorted(users, users, side="left")
    position = np.arange(len(users)) - starts
    if order == "recent":
        sizes = np.searchsorted(users, users, side="right") - starts
        return position >= sizes - k
    if order != "random":
        raise ValueError(f"subset order must be 'recent' or 'random', got {order!r}")
    # grouped by user as `users` is, shuffled within each user: the first k of each group are kept
    shuffled = np.lexsort((np.random.default_rng(seed).random(len(users)), users))
    keep = np.zeros(len(users), dtype=bool)
    keep[shuffled[position < k]] = True
    return keep


def estimated_weights(truth: SyntheticTruth, users: np.ndarray, pins: np.ndarray) -> np.ndarray:
    """Per user interest entry: the share of the given engagements matching it, with the profile prior.

    An engagement counts for the pin's tag the user weighs most in the long run (none if neither).

    Args:
        truth: the world's truth (interest lists and profile weights).
        users: engaged users.
        pins: engaged pins, aligned with `users`.
    """
    _, entry = truth.pin_match(users, pins)
    n_entries = len(truth.user_interest_values)
    counts = np.bincount(entry[entry >= 0], minlength=n_entries).astype(np.float64)
    counts += PRIOR * truth.user_interest_weights.astype(np.float64)
    interests = Ragged(truth.user_interest_offsets, truth.user_interest_values)
    totals = np.add.reduceat(counts, truth.user_interest_offsets[:-1])
    return (counts / totals[interests.row_of_value()]).astype(np.float32)


def static_truth(truth: SyntheticTruth, weights: np.ndarray | None = None) -> SyntheticTruth:
    """The truth with the users' interest weights fixed in time: `weights` (None: the profile's).

    Args:
        truth: the world's truth.
        weights: per user interest entry.
    """
    return dataclasses.replace(
        truth,
        user_interest_weights=truth.user_interest_weights if weights is None else weights,
        interest_drift=0.0,
        user_focus=no_focus(truth.n_users),
    )


def sequence_variants(k: int = RECENT_K) -> Callable[[World], Variants]:
    """The sequence rows' rankers (module docstring), each measured once per world.

    Args:
        k: engaged pins read by the recent and random rankers.
    """

    def variants(world: World) -> Variants:
        users, pins = engaged_history(world)
        rankers = {
            "true score": lambda: world.truth,
            "long-run mix": lambda: static_truth(world.truth),
            f"recent {k}": lambda: _estimated(world, users, pins, k, "recent"),
            f"random {k}": lambda: _estimated(world, users, pins, k, "random"),
            "bag": lambda: _estimated(world, users, pins, None, "recent"),
        }
        out = {}
        for name, make in rankers.items():
            key = f"sequence/{name}"
            if key not in world.measured:
                truth = make()
                evaluate(world, lambda task, t=truth: top_k(t, task, world.corpus), key=key)
            out[name] = world.measured[key]
        return out

    return variants


def _estimated(
    world: World, users: np.ndarray, pins: np.ndarray, k: int | None, order: str
) -> SyntheticTruth:
    keep = subset(users, k, order)
    return static_truth(world.truth, estimated_weights(world.truth, users[keep], pins[keep]))
