"""Every option of every config group, and every experiment, composes; bad keys fail early."""

from pathlib import Path

import pytest
from hydra import compose
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parent.parent / "conf"
GROUPS_WITHOUT_OPTIONS = {"experiment"}


def _options() -> list[tuple[str, str]]:
    options = []
    for path in sorted(CONF.rglob("*.yaml")):
        group = path.parent.relative_to(CONF).as_posix()
        # experiments and search presets are `@package _global_`: tested below
        if group == "." or group.split("/")[0] in ("experiment", "hparams_search"):
            continue
        options.append((group, path.stem))
    return options


def _experiments() -> list[str]:
    return sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize(("group", "option"), _options())
def test_every_option_composes(hydra_conf, group, option):
    cfg = compose("train", overrides=[f"{group}={option}"], return_hydra_config=True)
    node = OmegaConf.select(cfg, group.replace("/", "."))
    assert node is not None, f"{group}={option} left cfg.{group} empty"
    if "_target_" in node:
        module_name, _, attribute = node["_target_"].rpartition(".")
        module = __import__(module_name, fromlist=[attribute])
        assert hasattr(module, attribute), (
            f"{group}/{option}.yaml: _target_ {node['_target_']} does not exist"
        )


def test_there_are_options_and_experiments():
    groups = {group for group, _ in _options()}
    assert {"data", "split", "model", "model/crossing", "index", "eval", "trainer", "logger"} <= groups


@pytest.mark.parametrize("experiment", _experiments())
def test_every_experiment_composes(hydra_conf, experiment):
    cfg = compose("train", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    assert cfg.experiment_name
    assert cfg.report is not None, f"experiment {experiment} sets no report metadata"
    OmegaConf.to_container(cfg.report, resolve=True)


@pytest.mark.parametrize("preset", sorted(p.stem for p in (CONF / "hparams_search").glob("*.yaml")))
def test_every_search_preset_composes_on_the_validation_window(hydra_conf, preset):
    experiment = ["experiment=movielens"] if "movielens" in preset else []
    cfg = compose("train", overrides=[*experiment, f"hparams_search={preset}"], return_hydra_config=True)
    assert cfg.eval.window == "val", "a search never tunes on the test window"
    assert cfg.optimized_metric == "recall@50"
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.ebr_search.ResumableOptunaSweeper"
    assert sweeper.storage.startswith("sqlite:///")
    assert sweeper.storage.endswith("/optuna.db")
    assert sweeper.study_name == preset
    assert sweeper.n_trials > 0
    assert sweeper.max_failure_rate == 1.0
    searched = set(sweeper.params)
    assert {"train.sparse_lr", "train.dense_lr", "trainer.max_epochs", "model.embedding_dim"} <= searched
    prior = "serving.score_terms.popularity_prior.weight"
    assert {"model.negatives.num_negatives", "train.logq", prior} <= searched
    if experiment:  # one arm and one seed of experiment=movielens's crossings x seeds
        assert str(sweeper.params["seed"]) == "0"
        assert sweeper.params["model/crossing"] == "mlp"


def test_mistyped_key_fails_naming_it(hydra_conf):
    with pytest.raises(ConfigCompositionException, match="batch_sise"):
        compose("train", overrides=["train.batch_sise=5"])
    with pytest.raises(ConfigCompositionException, match="sed"):
        compose("train", overrides=["sed=1"])


def test_wrong_type_fails_naming_the_key(hydra_conf):
    with pytest.raises(ConfigCompositionException, match="seed"):
        compose("train", overrides=["seed=abc"])


def test_unknown_option_lists_valid_choices(hydra_conf):
    with pytest.raises(ConfigCompositionException, match=r"(?s)model/crossing.*Available options.*masknet"):
        compose("train", overrides=["model/crossing=masknett"])


@pytest.mark.parametrize("launcher", ["joblib", "submitit_slurm", "submitit_local"])
def test_launcher_presets_compose(hydra_conf, launcher):
    cfg = compose("train", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert launcher.split("_")[0] in cfg.hydra.launcher._target_.lower()


def test_unknown_key_message_lists_valid_keys_and_the_closest():
    from ebr.override_check import unknown_key_message

    message = unknown_key_message(CONF, "train", ["-m", "train.batch_sise=5", "seed=0,1"])
    assert "unknown config key 'train.batch_sise'" in message
    assert "batch_size, checkpoint_every_n_steps, dense_lr" in message
    assert "Did you mean 'train.batch_size'" in message
    nested = unknown_key_message(CONF, "train", ["model/crossing=masknet,mlp", "model.crossing.num_block=2"])
    assert "Did you mean 'model.crossing.num_blocks'" in nested  # checked against the chosen option


@pytest.mark.parametrize(
    ("argv", "replacement"),
    [
        (["train.num_negatives=8"], "model/negatives=uniform model.negatives.num_negatives=8"),
        (["-m", "seed=0", "train.num_negatives=0,16"], "model.negatives.num_negatives=0,16"),
    ],
)
def test_a_moved_key_names_its_replacement(argv, replacement):
    from ebr.override_check import unknown_key_message

    message = unknown_key_message(CONF, "train", argv)
    assert message.startswith("train.num_negatives moved: use ")
    assert message.endswith(replacement)


def test_moved_keys_are_gone_from_the_config(hydra_conf):
    # a moved key that still composed would be silently ignored by the code that read it
    with pytest.raises(ConfigCompositionException, match="num_negatives"):
        compose("train", overrides=["train.num_negatives=8"])
    cfg = compose("train", overrides=["model/negatives=uniform", "model.negatives.num_negatives=8"])
    assert cfg.model.negatives.num_negatives == 8


@pytest.mark.parametrize(
    "argv",
    [
        ["seed=3", "data=synthetic_tiny", "data.config.n_users=100"],
        ["model/negatives=uniform", "model.negatives.num_negatives=16"],
        ["+brand_new.key=1", "~report", "hydra.run.dir=/tmp/x", "--cfg", "job"],
        ["model/crossing=nope", "model.crossing.x=1"],  # Hydra itself lists the valid options
        ["experiment=crossing", "report.control=true"],
        ["data=movielens", "data.path=/somewhere"],  # a required (???) key exists
        ["data=events_file", "data.path=x.csv", "data.columns.user=uid", "model.crossing.hidden.0=8"],
    ],
)
def test_unknown_key_message_accepts_valid_overrides(argv):
    from ebr.override_check import unknown_key_message

    assert unknown_key_message(CONF, "train", argv) is None


def _leaves(node, prefix=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1], node


@pytest.mark.parametrize("experiment", [e for e in _experiments() if f"{e}_control" in _experiments()])
def test_a_control_differs_from_its_ablation_only_in_one_world_knob(hydra_conf, experiment):
    """A control that changed anything besides the knob would not isolate the phenomenon."""
    ablation, control = (
        dict(_leaves(OmegaConf.to_container(compose("train", overrides=[f"experiment={name}"]))))
        for name in (experiment, f"{experiment}_control")
    )
    differing = {key for key in ablation.keys() | control.keys() if ablation.get(key) != control.get(key)}
    knobs = {key for key in differing if key.startswith("data.config.")}
    assert differing - knobs == {"experiment_name", "report.control"}
    assert len(knobs) == 1
    assert control[knobs.pop()] == 0


def test_isolated_crossing_experiment_feeds_no_id_features(hydra_conf):
    cfg = compose("train", overrides=["experiment=crossing_isolated"])
    ids = {"user_id", "pin_id", "image_signature"}
    assert not ids & set(cfg.features.user_sparse)
    assert not ids & set(cfg.features.pin_sparse)
    assert cfg.data.config.feature_interaction > 0
    assert cfg.trainer.max_epochs == 10


def test_with_default_experiment_respects_a_chosen_one():
    from ebr.config import with_default_experiment

    assert with_default_experiment(["seed=1"], "crossing") == ["experiment=crossing", "seed=1"]
    chosen = ["experiment=crossing_isolated", "seed=1"]
    assert with_default_experiment(chosen, "crossing") == chosen


@pytest.mark.parametrize(
    ("overrides", "refit"),
    [
        ([], False),  # the synthetic world keeps fitting on train only
        (["data=movielens"], True),
        (["data=movielens", "eval=default"], False),
        (["data=events_file"], False),
        (["experiment=movielens"], True),
        (["experiment=movielens_baselines"], True),
        (["experiment=movielens", "eval.refit=false"], False),
    ],
)
def test_refit_is_on_for_movielens_only(hydra_conf, overrides, refit):
    cfg = compose("train", overrides=overrides)
    assert cfg.eval.refit is refit
    # the rest of the evaluation config is the same either way
    default = compose("train", overrides=[])
    assert {k: v for k, v in cfg.eval.items() if k != "refit"} == {
        k: v for k, v in default.eval.items() if k != "refit"
    }


def test_movielens_baselines_sweep_every_classical_baseline(hydra_conf):
    cfg = compose("train", overrides=["experiment=movielens_baselines"], return_hydra_config=True)
    assert cfg.hydra.sweeper.params.model.split(",") == ["popularity", "puresvd", "itemknn", "ease"]


@pytest.mark.parametrize("path", sorted((CONF / "hparams_search").glob("*.yaml")), ids=lambda p: p.stem)
def test_a_search_repeats_its_group_choices_among_its_params(path: Path) -> None:
    """`ebr-report --best` writes a trial's overrides: a group the search file chooses only in its
    defaults list would be missing from the best-trial file (it was, for the sequence encoder)."""
    search = OmegaConf.load(path)
    params = search.hydra.sweeper.params
    chosen = {
        key.removeprefix("override ").lstrip("/"): value
        for entry in search.defaults
        if OmegaConf.is_dict(entry)
        for key, value in entry.items()
        if key.startswith("override ")
    }
    for group, value in chosen.items():
        if not group.startswith("hydra/"):
            assert str(params.get(group)) == str(value), f"{path.name}: {group}={value} not in params"
