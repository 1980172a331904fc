"""The two-tower's parts: Hydra builds each from its own config group and hands it to the
retriever; each shapes the towers (`apply`) or the batches (`bind`) only when it is on; the network
settings are checked by name; a saved network config with the parts' flat keys still builds."""

from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from ebr.config import register_schemas
from ebr.data.world import WorldConfig, generate_world
from ebr.models.artifact import build_model
from ebr.models.assembly import plain_towers
from ebr.models.conditioning import ConditioningConfig
from ebr.models.features import resolve_features
from ebr.retrieval.id_embedding import IdEmbeddingConfig
from ebr.retrieval.two_tower import TwoTowerRetriever
from ebr.training.negatives import NoNegatives, UniformNegatives
from ebr.validation import ConfigValidationError, validate_config
from tests.training.tiny_model import tiny_model_config

REPO = Path(__file__).resolve().parents[2]


def _retriever(tmp_path, *overrides: str) -> TwoTowerRetriever:
    register_schemas()
    base = ["data=synthetic_tiny", f"trainer.default_root_dir={tmp_path}"]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = compose("train", overrides=[*base, *overrides])
    return instantiate(cfg.model)


def test_each_part_is_built_from_its_group(tmp_path):
    default = _retriever(tmp_path)
    assert default.negatives == NoNegatives()
    assert default.id_embedding == IdEmbeddingConfig(mode="scratch")
    assert default.conditioning == ConditioningConfig(mode="none")
    chosen = _retriever(
        tmp_path,
        "model/negatives=uniform",
        "model.negatives.num_negatives=16",
        "model/id_embedding=none",
        "model/conditioning=late_fusion",
    )
    assert chosen.negatives == UniformNegatives(16)
    assert chosen.id_embedding == IdEmbeddingConfig(mode="none")
    assert chosen.conditioning == ConditioningConfig(mode="late_fusion")


def test_a_part_checks_its_own_settings_before_work(tmp_path):
    with pytest.raises(Exception, match=r"model\.negatives\.num_negatives"):
        _retriever(tmp_path, "model/negatives=uniform", "model.negatives.num_negatives=-3")
    register_schemas()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        bad = compose("train", overrides=["model/negatives=uniform", "model.negatives.num_negatives=-3"])
        good = compose("train", overrides=["model/negatives=uniform", "model.negatives.num_negatives=3"])
    with pytest.raises(ConfigValidationError, match=r"model\.negatives\.num_negatives must be >= 0"):
        validate_config(bad)
    validate_config(good)


def test_network_settings_are_checked_by_name(tmp_path):
    retriever = _retriever(tmp_path)
    training = {"features": retriever.features, "train": retriever.train, "trainer": retriever.trainer}
    serving = {
        "index": {"_target_": "ebr.serving.index.IndexConfig"},
        "settings": {"score_terms": {}, "batch_size": 8},
    }
    network = {key: value for key, value in retriever.network_config.items() if not key.startswith("_")}
    network["output_dims"] = network.pop("output_dim")
    with pytest.raises(TypeError, match=r"missing \['output_dim'\], unknown \['output_dims'\]"):
        TwoTowerRetriever(training, serving, **network)


def test_parts_that_are_off_leave_the_towers_as_they_are():
    world = generate_world(WorldConfig(n_users=60, n_pins=40, n_interests=4, n_days=6))
    features = resolve_features(
        dict.fromkeys(["user_sparse", "user_dense", "pin_sparse", "pin_dense"]), world
    )
    towers = plain_towers(tiny_model_config(16, 8, 8), features, world)
    assert ConditioningConfig().apply(towers, world, None) is towers
    scratch = IdEmbeddingConfig().apply(towers, world, None)
    assert (scratch.network, scratch.user_spec, scratch.pin_spec) == (
        towers.network,
        towers.user_spec,
        towers.pin_spec,
    )
    assert scratch.manifest == {"id_embedding": "scratch"}
    without = IdEmbeddingConfig(mode="none").apply(towers, world, None)
    assert "user_id" not in without.user_spec.sparse
    assert "pin_id" not in without.pin_spec.sparse
    early = ConditioningConfig(mode="early_fusion").apply(towers, world, None)
    assert early.network["conditioning"] == {"mode": "early_fusion", "rows": world.n_interests + 1}
    assert early.condition_of is not None
    assert len(early.user_spec.sparse) == len(towers.user_spec.sparse) + 1


def test_a_saved_network_config_with_flat_part_keys_builds():
    # model.pt saves the parts' keys beside the widths (today's format): they reach TowerParts
    world = generate_world(WorldConfig(n_users=60, n_pins=40, n_interests=4, n_days=6))
    features = resolve_features(
        dict.fromkeys(["user_sparse", "user_dense", "pin_sparse", "pin_dense"]), world
    )
    towers = ConditioningConfig(mode="late_fusion").apply(
        plain_towers(tiny_model_config(16, 8, 8), features, world), world, None
    )
    model = build_model(
        {**towers.network, "id_freeze": False, "id_dropout": 0.0}, towers.user_spec, towers.pin_spec
    )
    assert model.conditioning == {"mode": "late_fusion", "rows": world.n_interests + 1}
    assert hasattr(model.user_tower, "condition_ebc")
    assert np.isfinite(sum(float(p.sum()) for p in model.parameters()))
