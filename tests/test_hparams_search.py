"""Hyperparameter search (`hparams_search=...`, Optuna) end to end on a tiny world, and its parts."""

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from jobs import REPO, job_env, module_command, run_module

from ebr.app import sweep_failed
from ebr.report.best import best_experiment, grid_rows, load_search
from ebr.report.cli import main as report_main
from ebr.runs import Tally, job_objective, write_metrics
from ebr.search import SearchConfigError, check_search_window, finished_trial_count, searched_keys

CONF = REPO / "conf"
# a world of 200 users and 100 pins; epochs and field width fixed so a trial takes a few seconds
TINY = [
    "data=synthetic_tiny",
    "data.config.n_users=200",
    "data.config.n_pins=100",
    "trainer.max_epochs=1",
    "model.embedding_dim=16",
    "logger=none",
    "trainer.enable_progress_bar=false",
]
SEARCH = ["hparams_search=two_tower_synthetic", *TINY]


def _search(sweep: Path, n_trials: int, *extra: str) -> subprocess.CompletedProcess:
    return run_module(
        "ebr.train", [*SEARCH, f"hydra.sweeper.n_trials={n_trials}", f"hydra.sweep.dir={sweep}", *extra]
    )


def _study(sweep: Path) -> optuna.Study:
    return optuna.load_study(study_name="two_tower_synthetic", storage=f"sqlite:///{sweep}/optuna.db")


def _metrics(job: Path) -> dict[str, float]:
    return json.loads((job / "metrics.json").read_text())


@pytest.fixture(scope="module")
def three_trials(tmp_path_factory) -> Path:
    sweep = tmp_path_factory.mktemp("search") / "sweep"
    result = _search(sweep, 3)
    assert result.returncode == 0, result.stderr[-4000:]
    return sweep


@pytest.mark.slow
def test_three_trial_search_records_each_validation_objective(three_trials):
    trials = _study(three_trials).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    for trial in trials:
        job = three_trials / str(trial.number)
        config = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
        assert config["eval"]["window"] == "val"
        assert trial.value == _metrics(job)["recall@50"], "the objective is the job's validation recall@50"
        assert (
            f"train.sparse_lr={trial.params['train.sparse_lr']}"
            in (job / ".hydra/overrides.yaml").read_text()
        )
    assert len({t.params["train.sparse_lr"] for t in trials}) == 3


@pytest.mark.slow
def test_search_naming_the_test_window_fails_before_any_trial(tmp_path):
    sweep = tmp_path / "sweep"
    result = _search(sweep, 3, "eval.window=test")
    assert result.returncode != 0
    assert "eval.window=test" in result.stderr
    assert "never tune on the test window" in result.stderr
    assert not sweep.exists(), "no trial, no study"


@pytest.mark.slow
def test_killed_search_resumes_with_the_trials_already_done(tmp_path):
    sweep = tmp_path / "sweep"
    command = module_command("ebr.train", [*SEARCH, "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={sweep}"])
    search = subprocess.Popen(
        command,
        cwd=REPO,
        env=job_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        # killed while its third trial runs: Hydra makes a job's directory when it starts it
        deadline = time.monotonic() + 300
        while not (sweep / "2" / ".hydra").is_dir():
            assert search.poll() is None, "the search ended before its third trial"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.killpg(search.pid, signal.SIGKILL)
        search.wait()
    assert not (sweep / "2" / "metrics.json").exists()
    done_at = [(sweep / str(i) / "metrics.json").stat().st_mtime_ns for i in (0, 1)]
    second = _search(sweep, 3)
    assert second.returncode == 0, second.stderr[-4000:]
    assert "2 of 3 trials done, 1 to run" in second.stdout + second.stderr
    trials = _study(sweep).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE"]
    assert trials[3].params == trials[2].params, "the killed trial's parameters run again"
    assert trials[3].value == _metrics(sweep / "3")["recall@50"]
    assert [(sweep / str(i) / "metrics.json").stat().st_mtime_ns for i in (0, 1)] == done_at
    # the budget is spent: the same command again runs nothing and succeeds
    third = _search(sweep, 3)
    assert third.returncode == 0, third.stderr[-4000:]
    assert len(_study(sweep).trials) == 4


@pytest.mark.slow
def test_failed_trials_are_recorded_and_the_search_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    # the first trial is queued with a temperature the loss refuses, the second with a good one
    study = optuna.create_study(
        study_name="two_tower_synthetic", storage=f"sqlite:///{sweep}/optuna.db", direction="maximize"
    )
    study.enqueue_trial({"train.loss.temperature": -1.0})
    study.enqueue_trial({"train.loss.temperature": 0.05})
    result = _search(sweep, 2, "train.loss.temperature=choice(0.05,-1.0)")
    assert result.returncode == 0, "a failed trial is a result, not a failed search"
    trials = _study(sweep).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert "temperature" in (sweep / "0" / "error.txt").read_text()
    assert trials[1].value == _metrics(sweep / "1")["recall@50"]
    assert "1 finished, 1 failed" in result.stdout + result.stderr
    # a search in which no trial finishes does fail
    nothing = _search(tmp_path / "none", 1, "train.loss.temperature=-1")
    assert nothing.returncode == 1


@pytest.mark.slow
def test_best_trial_file_composes_and_reproduces_the_validation_metric(three_trials, tmp_path):
    out = tmp_path / "conf" / "experiment" / "tiny_best.yaml"
    report = run_module("ebr.report.cli", ["--best", str(three_trials), "--out", str(out)])
    assert report.returncode == 0, report.stderr
    best = max(_study(three_trials).trials, key=lambda t: t.value)
    assert f"best trial {best.number}: validation recall@50 = {best.value!r}" in report.stdout
    assert f"train.sparse_lr={best.params['train.sparse_lr']}" in report.stdout
    run_dir = tmp_path / "rerun"
    command = ["--config-dir", str(tmp_path / "conf"), "experiment=tiny_best", "eval.window=val"]
    rerun = run_module("ebr.train", [*command, f"hydra.run.dir={run_dir}"])
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert _metrics(run_dir)["recall@50"] == best.value
    trial_record = json.loads((three_trials / str(best.number) / "run.json").read_text())
    assert json.loads((run_dir / "run.json").read_text())["config_hash"] == trial_record["config_hash"]
    # without eval.window=val the file is the final runs: the test window, five seeds
    written = yaml.safe_load(out.read_text())
    assert written["hydra"]["sweeper"]["params"]["seed"] == "0,1,2,3,4"
    assert "window" not in written.get("eval", {})


# ---- the parts, without training ----


def test_job_objective_reads_the_recorded_metric(tmp_path):
    assert math.isnan(job_objective(tmp_path, "recall@50")), "an unfinished job is a failed trial"
    write_metrics(tmp_path, {"recall@50": 0.25, "ndcg@50": 0.1})
    assert job_objective(tmp_path, "recall@50") == 0.25
    with pytest.raises(KeyError, match="ndcg@50"):
        job_objective(tmp_path, "recall@5O")


def test_window_guard_and_searched_keys():
    check_search_window("val", ["train.sparse_lr"])
    with pytest.raises(SearchConfigError, match=r"eval\.window=test"):
        check_search_window("test")
    with pytest.raises(SearchConfigError, match=r"must not vary eval\.window"):
        check_search_window("val", searched_keys({}, ["eval.window=val,test"]))
    params = {"train.sparse_lr": "tag(log, interval(0.01, 0.5))", "seed": 0}
    assert searched_keys(params, ["eval.window=val", "train.logq=choice(none,exact)"]) == [
        "train.sparse_lr",
        "train.logq",
    ]


def test_stale_running_trials_are_failed_and_queued_again():
    study = optuna.create_study(direction="maximize")
    distribution = optuna.distributions.UniformDistribution(0.0, 1.0)
    done = study.ask()
    done._suggest("x", distribution)
    study.tell(done, values=[0.5])
    stale = study.ask()
    stale._suggest("x", distribution)
    count, rerun = finished_trial_count(study)
    assert count == 1
    assert rerun == [stale.params]
    assert study.trials[1].state.name == "FAIL"


def test_a_search_fails_only_when_nothing_finished_or_a_job_was_refused():
    assert not sweep_failed(Tally({"finished": 2, "failed": 1}, []), search=True)
    assert sweep_failed(Tally({"finished": 2, "failed": 1}, []), search=False)
    assert sweep_failed(Tally({"failed": 2}, []), search=True)
    assert sweep_failed(Tally({"finished": 2, "refused": 1}, []), search=True)


def _fake_trial(directory: Path, experiment: str | None, overrides: list[str], value: float) -> None:
    hydra_dir = directory / ".hydra"
    hydra_dir.mkdir(parents=True)
    (hydra_dir / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    config = {
        "optimized_metric": "recall@50",
        "seed": 0,
        "train": {"sparse_lr": 0.3},
        "eval": {"window": "val"},
    }
    (hydra_dir / "config.yaml").write_text(yaml.safe_dump(config))
    choices = {"experiment": experiment, "model/crossing": "mlp", "data": "movielens", "hparams_search": "x"}
    sweeper = {"direction": "maximize", "study_name": "two_tower_movielens"}
    sweeper["params"] = {
        "seed": 0,
        "model/crossing": "mlp",
        "train.sparse_lr": "tag(log, interval(0.05, 0.5))",
    }
    hydra = {"hydra": {"sweeper": sweeper, "runtime": {"choices": choices}}}
    (hydra_dir / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    write_metrics(directory, {"recall@50": value})


def test_best_file_of_a_movielens_search_composes_over_its_experiment(tmp_path):
    sweep = tmp_path / "sweep"
    overrides = ["seed=0", "model/crossing=mlp", "train.sparse_lr=0.3", "hparams_search=two_tower_movielens"]
    _fake_trial(sweep / "0", "movielens", [*overrides[:2], "train.sparse_lr=0.1", overrides[3]], 0.1)
    _fake_trial(sweep / "1", "movielens", overrides, 0.2)
    search = load_search(sweep)
    best = search.best()
    assert best is not None
    assert best.number == 1
    name, text = best_experiment(search, best)
    config_dir = tmp_path / "conf"
    (config_dir / "experiment").mkdir(parents=True)
    (config_dir / "experiment" / f"{name}.yaml").write_text(text)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            searchpath = f"hydra.searchpath=[file://{config_dir}]"
            cfg = compose("train", overrides=[searchpath, f"experiment={name}"], return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    assert cfg.train.sparse_lr == 0.3
    assert cfg.eval.window == "test", "the final runs score test"
    assert cfg.eval.refit, "refitted on train+val (experiment=movielens: data=movielens, eval=refit)"
    assert cfg.train.logq == "exact", "the rest of experiment=movielens stays"
    assert cfg.hydra.sweeper.params["model/crossing"] == "mlp", "one arm, not the experiment's three"
    assert cfg.hydra.sweeper.params["seed"] == "0,1,2,3,4"
    # the trial ran seed 0, the schema's default: the file does not restate it
    assert "seed" not in yaml.safe_load(text)
    assert cfg.seed == 0
    # a trial run at another seed keeps it, so a single run reproduces that trial
    config_file = best.path / ".hydra" / "config.yaml"
    config_file.write_text(yaml.safe_dump({**yaml.safe_load(config_file.read_text()), "seed": 7}))
    assert yaml.safe_load(best_experiment(search, best)[1])["seed"] == 7


def test_baseline_grids_are_read_in_the_trials_form(tmp_path):
    write_metrics(
        tmp_path, {"tune/rank": 32.0, "tune/recall@50[rank=16]": 0.2, "tune/recall@50[rank=32]": 0.3}
    )
    assert grid_rows(tmp_path) == [("rank=16", 0.2, False), ("rank=32", 0.3, True)]


def test_report_best_prints_a_baseline_sweeps_grid_and_refuses_other_sweeps(tmp_path, capsys):
    job = tmp_path / "0"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["model=puresvd"]))
    assert report_main(["--best", str(tmp_path)]) == 2, "no search and no grid"
    write_metrics(job, {"tune/rank": 32.0, "tune/recall@50[rank=16]": 0.2, "tune/recall@50[rank=32]": 0.3})
    assert report_main(["--best", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "* rank=32" in out
    assert "  rank=16" in out


def test_best_out_writes_the_full_precision_trial_with_its_provenance(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    lr = 0.05971234567891234
    search = "hparams_search=two_tower_movielens"
    overrides = ["seed=0", "model/crossing=mlp", f"train.sparse_lr={lr}", search, "num_threads=1"]
    _fake_trial(sweep / "0", "movielens", [*overrides[:2], "train.sparse_lr=0.1", overrides[3]], 0.25)
    _fake_trial(sweep / "1", "movielens", overrides, 0.3210987654321)
    config_file = sweep / "1" / ".hydra" / "config.yaml"
    config = yaml.safe_load(config_file.read_text())
    config["train"]["sparse_lr"] = lr
    config_file.write_text(yaml.safe_dump(config))
    (sweep / "1" / "run.json").write_text(json.dumps({"config": config, "code": {"git_commit": "abc123def"}}))
    out = tmp_path / "conf" / "experiment" / "movielens_tuned.yaml"
    out.parent.mkdir(parents=True)
    assert report_main(["--best", str(sweep), "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# @package _global_\n")
    comment = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    for needle in ("study two_tower_movielens", "trial 1 of 2", "recall@50 = 0.3210987654321", "abc123def"):
        assert needle in comment, needle
    document = yaml.safe_load(text)
    assert document["train"]["sparse_lr"] == lr, "full precision, not a rounding"
    assert document["defaults"][0] == "movielens", "based on the experiment the search ran"
    assert document["hydra"]["sweeper"]["params"]["train.sparse_lr"] == repr(lr)
    assert document["experiment_name"] == "movielens_tuned", "named as experiment=<the file's stem>"
    assert "num_threads" not in document, "the search's thread share is not a hyperparameter"
    assert not list(out.parent.glob(".*.tmp")), "written through a temporary, renamed"


def test_best_out_refuses_a_sweep_that_is_not_a_search(tmp_path, capsys):
    job = tmp_path / "sweep" / "0"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["model=puresvd"]))
    write_metrics(job, {"tune/rank": 32.0, "tune/recall@50[rank=16]": 0.2, "tune/recall@50[rank=32]": 0.3})
    out = tmp_path / "best.yaml"
    assert report_main(["--best", str(tmp_path / "sweep"), "--out", str(out)]) == 2
    assert "is not a hyperparameter search" in capsys.readouterr().err
    assert not out.exists()
