"""WorldConfig is the one source of the world's defaults: the Hydra schema is derived from it."""

from __future__ import annotations

import dataclasses

import pytest
from hydra import compose
from hydra.errors import ConfigCompositionException
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf
from world_helpers import CONF

from ebr.data.world import WorldConfig
from ebr.data.world.config import world_config_schema

PRESETS = sorted(p.stem for p in (CONF / "data").glob("synthetic*.yaml"))


def world_of(cfg) -> WorldConfig:
    return instantiate(cfg.data.config)


def test_schema_has_every_field_default_and_type_of_world_config():
    schema = {f.name: f for f in dataclasses.fields(world_config_schema())}
    assert get_class(schema.pop("_target_").default) is WorldConfig
    fields = {f.name: f for f in dataclasses.fields(WorldConfig)}
    assert list(schema) == list(fields)
    for name, field in fields.items():
        assert schema[name].default == field.default, name
        assert schema[name].type.__name__ == field.type, name


def test_the_default_world_is_world_config_and_the_yaml_lists_no_defaults(hydra_conf):
    assert world_of(compose("train", overrides=["data=synthetic"])) == WorldConfig()
    assert "config" not in OmegaConf.load(CONF / "data" / "synthetic.yaml")
    defaults = WorldConfig().to_dict()
    for preset in PRESETS:
        listed = OmegaConf.load(CONF / "data" / f"{preset}.yaml").get("config", {})
        # a preset lists only what differs from WorldConfig's defaults
        assert all(value != defaults[key] for key, value in listed.items()), preset
        assert world_of(compose("train", overrides=[f"data={preset}"])) == WorldConfig(**listed), preset


def test_command_line_overrides_reach_the_world_and_its_hash(hydra_conf):
    cfg = compose(
        "train", overrides=["data=synthetic_tiny", "data.config.trend_strength=0", "data.config.n_users=500"]
    )
    world = world_of(cfg)
    tiny = OmegaConf.load(CONF / "data" / "synthetic_tiny.yaml").config
    expected = WorldConfig(**{**tiny, "n_users": 500, "trend_strength": 0.0})
    assert world == expected
    assert world.hash() == expected.hash()
    assert cfg.data.config.trend_strength == 0.0


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("data.config.n_user=5", "n_user"),
        ("data.config.n_users=abc", "n_users"),
        ("data.config.seed=1.5", "seed"),
    ],
)
def test_bad_world_overrides_fail_naming_the_key(hydra_conf, override, named):
    with pytest.raises(ConfigCompositionException, match=named):
        compose("train", overrides=["data=synthetic_tiny", override])


def test_experiments_still_turn_their_knob(hydra_conf):
    control = world_of(compose("train", overrides=["experiment=crossing_isolated_control"]))
    assert control.feature_interaction == 0.0
    assert control.interaction_ratio == 2.0
    assert control.n_users == OmegaConf.load(CONF / "data" / "synthetic_small.yaml").config.n_users
