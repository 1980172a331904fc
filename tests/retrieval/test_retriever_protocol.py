"""The retriever protocol: a job asks the model's class whether it loads a saved model, and every
retriever answers `load` and `info`."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ebr.retrieval.ease import EASE
from ebr.retrieval.itemknn import ItemKNN
from ebr.retrieval.popularity import Popularity
from ebr.retrieval.protocol import Retriever, retriever_class
from ebr.retrieval.puresvd import PureSVD
from ebr.retrieval.two_tower import TwoTowerRetriever

REPO = Path(__file__).resolve().parents[2]
BASELINES = ("popularity", "ease", "itemknn", "puresvd")


@pytest.mark.parametrize("name", [*BASELINES, "two_tower"])
def test_the_model_class_says_from_the_config_whether_it_loads(name: str) -> None:
    model = OmegaConf.load(REPO / "conf" / "model" / f"{name}.yaml")
    cls = retriever_class(model)  # found without building the model
    assert cls.loadable is (name == "two_tower")


@pytest.mark.parametrize("cls", [Popularity, EASE, ItemKNN, PureSVD])
def test_a_baseline_refuses_to_load_and_records_nothing(cls: type) -> None:
    model = cls()
    assert isinstance(model, Retriever)
    assert model.info() == {}
    with pytest.raises(ValueError, match=rf"{cls.__name__} saves no model, so it cannot serve model\.pt"):
        model.load(Path("model.pt"), data=None, split=None)


def test_the_two_tower_records_its_id_embedding(tmp_path: Path) -> None:
    overrides = ["data=synthetic_tiny", "logger=none", f"trainer.default_root_dir={tmp_path}"]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = compose("train", overrides=overrides)
    retriever = instantiate(cfg.model)
    assert isinstance(retriever, TwoTowerRetriever)
    assert isinstance(retriever, Retriever)
    assert retriever.info() == {"id_embedding": {"mode": "scratch"}}


@pytest.mark.parametrize("name", BASELINES)
def test_eval_only_with_a_model_that_saves_none_names_it(name: str) -> None:
    from ebr.pipeline import checkpoint_of

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = compose(
            "train", overrides=["data=synthetic_tiny", f"model={name}", "eval_only=true", "ckpt_path=x"]
        )
    cls = retriever_class(cfg.model)
    with pytest.raises(
        ValueError, match=rf"eval_only=true serves a saved model, but {cls.__name__} .* saves none"
    ):
        checkpoint_of(cfg)
