"""The session's source interest in the engagement model (`WorldConfig.source_taste`, docs/world.md).

The truth scores a user-pin pair by the user's taste for the pin's tag they weigh most
(ebr.data.world.truth). With `source_taste` > 0, a share of impressions is engaged instead through
the session's source interest, the interest the logging policy surfaced the pin through: its weight
and the user's own taste for it replace the top tag's. They differ only where the pin carries two
interests the user follows and the session browsed the one they weigh less: there the logged source
interest tells what the pin's tags cannot, which tag the engagement came through.
"""

from __future__ import annotations

import numpy as np

from ebr.data.world.config import WorldConfig, stream
from ebr.data.world.truth import SyntheticTruth


def source_taste_shift(
    config: WorldConfig,
    day: int,
    truth: SyntheticTruth,
    users: np.ndarray,
    pins: np.ndarray,
    sources: np.ndarray,
) -> np.ndarray | None:
    """Per impression, the source-interest logit minus the top-tag logit; None when the knob is off.

    An impression takes the shift with probability `config.source_taste` (its own random stream, so
    the other draws of the day are unchanged), when its source is a tag of the pin the user follows.

    Args:
        config: the world config.
        day: the simulated day (selects the sub-stream).
        truth: the world's truth.
        users: (n,) user ids of the impressions.
        pins: (n,) pin ids.
        sources: (n,) the source interest of each impression (-1: none, e.g. exploration).
    """
    if config.source_taste == 0:
        return None
    users = np.asarray(users, np.int64)
    pins = np.asarray(pins, np.int64)
    sources = np.asarray(sources, np.int64)
    top_weight, top_entry = truth.pin_match(users, pins)
    source_weight, source_entry = truth.interest_entry(users, sources)
    carries = (truth.pin_interests[pins] == sources[:, None]).any(axis=1) & (sources >= 0)
    drawn = stream(config.seed, "source_taste", day).random(len(users)) < config.source_taste
    take = drawn & carries & (source_entry >= 0) & (source_entry != top_entry)
    shift = np.zeros(len(users))
    if not take.any():
        return shift
    rows = np.flatnonzero(take)
    deviation = truth.user_interest_taste[source_entry[rows]].astype(np.float64)
    top = top_entry[rows]
    deviation -= np.where((top >= 0)[:, None], truth.user_interest_taste[np.maximum(top, 0)], 0.0)
    affinity = np.einsum("ij,ij->i", deviation, truth.pin_vectors[pins[rows]].astype(np.float64))
    shift[rows] = truth.affinity_scale * affinity + truth.interest_match_weight * (
        source_weight[rows] - top_weight[rows]
    )
    return shift
