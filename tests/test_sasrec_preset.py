"""`model=sasrec`: the ID-only pin tower and the sequence user tower, no other features."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ebr.config import register_schemas

CONF = Path(__file__).resolve().parent.parent / "conf"


def test_sasrec_composes_an_id_only_pin_tower_and_the_sequence_user_tower() -> None:
    register_schemas()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("train", overrides=["model=sasrec", "split=leave_last_out"])
    features = OmegaConf.to_container(cfg.model.training.features, resolve=True)
    assert features["pin_sparse"] == ["pin_id"]
    for key in ("user_sparse", "user_dense", "pin_dense"):
        assert features[key] == [], key
    assert features["history"] is False
    assert cfg.model.user_encoder.kind == "sequence"
    assert cfg.model._target_ == "ebr.retrieval.two_tower.TwoTowerRetriever"
