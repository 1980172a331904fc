"""A user feature built from the training window: the pins each user engaged with.

Only `split.train` is read, so the bag never holds a validation or test label; during training
each example's own pin is removed from its bag (ebr.data.batching), so the tower cannot learn
to look the label up.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ebr.data.csr import offsets_from_lengths
from ebr.data.schema import CategoricalFeature, InteractionData, Split

HISTORY = "history"


def with_history(data: InteractionData, split: Split, max_length: int = 200) -> InteractionData:
    """`data` whose user table gains the categorical feature "history" (distinct train-window pins).

    Args:
        data: the data set.
        split: its split; only `split.train` is used.
        max_length: keep each user's most recent `max_length` distinct pins.
    """
    if max_length <= 0:
        raise ValueError(f"features.history_length must be positive, got {max_length}")
    if HISTORY in data.users.categorical:
        raise ValueError(f"{data.source}: the user table already has a feature named '{HISTORY}'")
    train = split.train.sort_values(["user", "timestamp"], kind="stable")
    # the last engagement with a pin counts; keep the most recent max_length per user
    train = train.drop_duplicates(["user", "pin"], keep="last")
    rank_from_end = train.groupby("user").cumcount(ascending=False).to_numpy()
    train = train[rank_from_end < max_length]
    # rows are sorted by user, so each user's bag is a consecutive run
    lengths = np.bincount(train["user"].to_numpy(np.int64), minlength=data.users.n_rows)
    feature = CategoricalFeature(
        offsets_from_lengths(lengths), train["pin"].to_numpy(np.int64), data.pins.n_rows
    )
    users_table = dataclasses.replace(data.users, categorical={**data.users.categorical, HISTORY: feature})
    return dataclasses.replace(data, users=users_table)
