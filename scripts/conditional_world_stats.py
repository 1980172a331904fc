"""What a world's logged source interest says that its pins' tags do not (docs/world.md, source_taste).

For one synthetic world (`data=synthetic_small` unless other world keys are given as key=value):

- over engagement rows (clicks and repins) of the whole horizon: the share whose item-interest
  training condition (one of the pin's tags, drawn as ebr.models.conditioning draws it) differs from
  the logged source interest, and the share whose item-interest condition is an interest the user
  does not follow (serving never queries it);
- over the test window's (user, served interest c, engaged pin tagged c) targets of ebr's
  `filtered_hr@100`, split by c's rank (the user's top interest or another): the share engaged in a
  session browsing c, browsing another interest, or exploring.

Usage:
    python scripts/conditional_world_stats.py seed=0 second_interest_prob=1.0 source_taste=1.0
"""

from __future__ import annotations

import os
import sys

import numpy as np

from ebr.data.csr import Csr
from ebr.data.loaders.synthetic import load_world
from ebr.data.schema import CLICK, NO_INTEREST, REPIN, SECONDS_PER_DAY
from ebr.data.world.config import WorldConfig
from ebr.models.conditioning import training_conditions

SMALL = {"n_users": 6000, "n_pins": 3000, "n_interests": 16, "n_days": 40}
TEST_DAYS = 7
SERVED = 3


def world_of(argv: list[str]) -> WorldConfig:
    """data=synthetic_small's world with key=value changes."""
    values: dict[str, float | int] = dict(SMALL)
    for item in argv:
        key, value = item.split("=")
        values[key] = float(value) if "." in value else int(value)
    return WorldConfig(**values)


def main() -> None:
    config = world_of(sys.argv[1:])
    data = load_world(config, os.environ.get("EBR_CACHE_DIR", os.path.expanduser("~/.cache/ebr")))
    events = data.events[data.events["event"].isin([CLICK, REPIN])]
    item = training_conditions(events, data, "item_interest")
    source = training_conditions(events, data, "source_interest")
    followed = data.users.categorical["interests"]
    users = events["user"].to_numpy()
    follows = Csr.from_pairs(followed.row_of_value(), followed.values, followed.n_rows).contains_pairs(
        users, item
    )
    print(f"world {config.hash()} ({sys.argv[1:]}): {len(events)} engagement rows")
    print(f"  item condition != source condition: {np.mean(item != source):.3f}")
    print(f"  item condition not followed by the user: {np.mean(~follows):.3f}")
    test = events[events["timestamp"] >= (config.n_days - TEST_DAYS) * SECONDS_PER_DAY]
    test = test.drop_duplicates(["user", "pin", "interest"])
    tags = data.pins.categorical["interest"]
    counts = {"top": np.zeros(3), "other": np.zeros(3)}
    for user, pin, logged in zip(test["user"].tolist(), test["pin"].tolist(), test["interest"].tolist()):
        mine = followed.values[followed.offsets[user] : followed.offsets[user + 1]][:SERVED].tolist()
        for tag in tags.values[tags.offsets[pin] : tags.offsets[pin + 1]].tolist():
            if tag in mine:
                where = 0 if logged == tag else (2 if logged == NO_INTEREST else 1)
                counts["top" if mine.index(tag) == 0 else "other"][where] += 1
    for name, (own, other, explore) in counts.items():
        total = own + other + explore
        print(
            f"  {name} interest targets {int(total)}: through a session browsing it {own / total:.3f},"
            f" another interest {other / total:.3f}, exploration {explore / total:.3f}"
        )


if __name__ == "__main__":
    main()
