"""experiment=sequence (and its control) and hparams_search=sequence_movielens compose as
experiments/sequence.md runs them: three arms, each reading the user's past one way."""

from pathlib import Path

import pytest
from hydra import compose
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from ebr.runs import parse_override

CONF = Path(__file__).resolve().parent.parent / "conf"
ARMS = ("no_history", "bag", "sequence")


@pytest.mark.parametrize("experiment", ["sequence", "sequence_control"])
def test_each_arm_reads_the_past_one_way(hydra_conf, experiment):
    cfg = compose("train", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    arms = str(cfg.hydra.sweeper.params["+experiment/sequence_arm"]).split(",")
    assert arms == list(ARMS)
    assert cfg.data.config.interest_drift == (1.0 if experiment == "sequence" else 0.0)
    seen = {}
    for arm in arms:
        job = compose("train", overrides=[f"experiment={experiment}", f"+experiment/sequence_arm={arm}"])
        assert job.data.config.n_users == 4000, "synthetic_long"
        seen[arm] = (job.model.user_encoder.kind, job.features.history)
        if arm == "sequence":
            encoder = job.model.user_encoder
            assert (encoder.width, encoder.length, encoder.layers) == (32, 20, 1)
    # the sequence arm does not also read the bag: each arm has one view of the past, or none
    assert seen == {"no_history": ("bag", False), "bag": ("bag", True), "sequence": ("sequence", False)}


def test_report_block_names_the_bag_arm_and_the_claim(hydra_conf):
    cfg = compose("train", overrides=["experiment=sequence"])
    report = OmegaConf.to_container(cfg.report, resolve=True)
    # ebr-report's arm keys drop the override's "+": the baseline names the key as it parses it
    arm_key, value = parse_override("+experiment/sequence_arm=bag")
    assert report["baseline"] == {arm_key: value} == {"experiment/sequence_arm": "bag"}
    assert report["metrics"] == ["recall@100", "ndcg@100", "sim/engaged_sessions"]
    assert report["page"] == "experiments/sequence.md"
    assert report["control"] is False
    claims = [(c["arm"], c["metric"], c["direction"]) for c in report["claims"]]
    assert claims == [({arm_key: "sequence"}, "recall@100", "+")]
    control = compose("train", overrides=["experiment=sequence_control"])
    assert control.report.control is True


def test_sequence_search_space_tunes_the_encoder_on_validation(hydra_conf):
    cfg = compose(
        "train",
        overrides=["experiment=movielens", "hparams_search=sequence_movielens"],
        return_hydra_config=True,
    )
    assert cfg.model.user_encoder.kind == "sequence"
    assert cfg.eval.window == "val"
    assert cfg.hydra.sweeper.study_name == "sequence_movielens"
    encoder_keys = {f"model.user_encoder.{key}" for key in ("length", "width", "layers", "dropout")}
    assert encoder_keys <= set(cfg.hydra.sweeper.params)
    assert str(cfg.hydra.sweeper.params["seed"]) == "0"


def test_the_causal_bag_arm_is_the_bag_arm_with_the_causal_bag(hydra_conf):
    bag = compose("train", overrides=["experiment=sequence", "+experiment/sequence_arm=bag"])
    causal = compose("train", overrides=["experiment=sequence", "+experiment/sequence_arm=bag_causal"])
    assert bag.features.history_causal is False, "the default: the whole-window bag"
    assert causal.features.history
    assert causal.features.history_causal is True
    assert causal.model.user_encoder.kind == "bag"
    assert OmegaConf.to_container(causal.features) == {
        **OmegaConf.to_container(bag.features),
        "history_causal": True,
    }


def test_a_history_causal_that_is_not_a_bool_fails_naming_the_key(hydra_conf):
    assert compose("train", overrides=["features.history_causal=true"]).features.history_causal is True
    with pytest.raises(ConfigCompositionException, match="history_causal"):
        compose("train", overrides=["features.history_causal=maybe"])
