"""The world's source-interest knob (`source_taste`, ebr.data.world.sessions): off it changes nothing,
on it changes only engagements, by the logit of the session's interest computed independently."""

from __future__ import annotations

import dataclasses

import hydra
import numpy as np
from hydra import compose, initialize_config_dir

from ebr.config import register_schemas
from ebr.data.schema import IMPRESSION, NO_INTEREST
from ebr.data.world.generate import generate_world
from ebr.data.world.sessions import source_taste_shift
from ebr.diagnostics.headroom.conditional import only_slot, per_interest
from ebr.diagnostics.headroom.study import prepare
from tests.data.world_helpers import CONF, tiny

TWO_TAGS = tiny(second_interest_prob=1.0, n_days=4)


def test_the_knob_off_adds_nothing() -> None:
    world = generate_world(TWO_TAGS)
    users = world.events["user"].to_numpy()[:50]
    pins = world.events["pin"].to_numpy()[:50]
    assert source_taste_shift(TWO_TAGS, 0, world.truth, users, pins, np.zeros(50, np.int64)) is None


def test_the_knob_changes_engagements_not_impressions() -> None:
    off, on = (
        generate_world(TWO_TAGS),
        generate_world(tiny(second_interest_prob=1.0, n_days=4, source_taste=1.0)),
    )
    shown = [w.events[w.events["event"] == IMPRESSION].reset_index(drop=True) for w in (off, on)]
    assert shown[0].equals(shown[1])
    assert not off.events.equals(on.events)


def test_the_shift_is_the_session_interests_logit_minus_the_top_tags() -> None:
    config = tiny(second_interest_prob=1.0, n_days=4, source_taste=1.0)
    world = generate_world(config)
    truth = world.truth
    events = world.events[(world.events["event"] == IMPRESSION) & (world.events["interest"] != NO_INTEREST)]
    users = events["user"].to_numpy(np.int64)
    pins, sources = events["pin"].to_numpy(np.int64), events["interest"].to_numpy(np.int64)
    shift = source_taste_shift(config, 0, truth, users, pins, sources)
    offsets, values = truth.user_interest_offsets, truth.user_interest_values
    checked = 0
    for row in range(len(users)):
        user, pin, source = int(users[row]), int(pins[row]), int(sources[row])
        mine = values[offsets[user] : offsets[user + 1]].tolist()
        # independently: the truth as seen by a session browsing only the source interest
        alone = only_slot(truth, mine.index(source))
        time = 10**9  # every pin exists: the trend term cancels in the difference
        expected = alone.true_score(user, pin, time) - truth.true_score(user, pin, time)
        assert shift[row] == np.float64(expected) or abs(shift[row] - expected) < 1e-4
        checked += shift[row] != 0
    # pins with two interests the user follows, browsed through the one they weigh less, do move
    assert checked > 0
    assert (shift != 0).mean() < 0.5


def test_the_headroom_session_ranker_differs_only_with_two_tagged_pins() -> None:
    register_schemas()
    overrides = ["data=synthetic_tiny", "data.config.n_users=400", "data.config.n_pins=300"]
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("train", overrides=overrides)
    base = hydra.utils.instantiate(cfg.data.config)
    lists = {}
    for share in (0.0, 1.0):
        world = prepare(dataclasses.replace(base, second_interest_prob=share), cfg, None, sessions=1)
        pool = world.corpus
        lists[share] = [
            per_interest(world.truth, world.task, pool, by_session=session) for session in (False, True)
        ]
    # one tag per pin: a session's interest is the pin's only tag, both rankers are one ranking
    np.testing.assert_array_equal(*lists[0.0])
    assert (lists[1.0][0] != lists[1.0][1]).any()
