"""Reading sweep directories: arms, seeds, failed and missing runs, metadata, bad input."""

from __future__ import annotations

import pytest
import yaml
from report_fixtures import CROSSING_REPORT, write_job

from ebr.report.choose import find_baseline, values_match
from ebr.report.stats import paper_for_arm
from ebr.report.sweep import SweepError, load_sweep, parse_override


def test_arms_seeds_and_problems(make_sweep) -> None:
    values = {
        ("mlp", 0): {"m": 1.0},
        ("mlp", 1): {"m": 1.0},
        ("masknet", 0): {"m": 1.0},
        ("masknet", 1): {"m": 1.0},
        ("dhen", 0): {"m": 1.0},
    }
    sweep = load_sweep(make_sweep(values, report=CROSSING_REPORT, failed=(("dhen", 1),), unfinished=()))
    assert sweep.arm_keys == ["model/crossing"]  # experiment= is constant, seed is the seed key
    assert sweep.arms == ["model/crossing=mlp", "model/crossing=masknet", "model/crossing=dhen"]
    assert sweep.seeds == ["0", "1"]
    assert [(p.name, p.arm, p.seed) for p in sweep.failed] == [("5", "model/crossing=dhen", "1")]
    assert "ValueError: diverged" in sweep.failed[0].reason
    assert sweep.missing == []
    assert sweep.meta.technique == CROSSING_REPORT["technique"]
    assert sweep.meta.metrics == ("recall@100", "sim/repins")
    assert sweep.meta.wandb_group == "crossing"
    assert find_baseline(sweep, sweep.meta.baseline) == "model/crossing=mlp"


def test_unfinished_job_and_grid_hole_are_missing(make_sweep) -> None:
    values = {("mlp", 0): {"m": 1.0}, ("mlp", 1): {"m": 2.0}, ("masknet", 0): {"m": 1.0}}
    sweep = load_sweep(make_sweep(values, unfinished=(("dhen", 0),)))
    reasons = {(p.arm, p.seed): p for p in sweep.missing}
    assert set(reasons) == {
        ("model/crossing=dhen", "0"),  # directory without metrics.json or error.txt
        ("model/crossing=masknet", "1"),  # no directory at all
        ("model/crossing=dhen", "1"),
    }
    assert reasons[("model/crossing=dhen", "0")].name == "3"
    assert "no job directory" in reasons[("model/crossing=masknet", "1")].reason


def test_several_varying_keys_make_a_combined_label(tmp_path) -> None:
    for i, (a, b, seed) in enumerate([(1, "x", 0), (2, "x", 0), (1, "y", 0)]):
        write_job(tmp_path, str(i), [f"a={a}", f"+b={b}", f"seed={seed}"], metrics={"m": 1.0})
    sweep = load_sweep(tmp_path)
    assert sweep.arm_keys == ["a", "b"]
    # as Hydra writes override_dirname: the lines as given ("+b=x"), sorted as text
    assert sweep.arms == ["+b=x,a=1", "+b=x,a=2", "+b=y,a=1"]
    assert find_baseline(sweep, {"a": 1, "b": "x"}) == "+b=x,a=1"
    with pytest.raises(SweepError, match="several arms"):
        find_baseline(sweep, {"a": "1"})
    assert find_baseline(sweep, {"a": 3}) is None


def test_seed_from_config_when_not_overridden(tmp_path) -> None:
    write_job(tmp_path, "0", ["model/crossing=mlp"], metrics={"m": 1.0}, config={"seed": 7})
    write_job(tmp_path, "1", ["model/crossing=dhen"], metrics={"m": 1.0}, config={"seed": 7})
    sweep = load_sweep(tmp_path)
    assert sweep.seeds == ["7"]
    assert sweep.cells[("model/crossing=dhen", "7")].name == "1"


def test_config_interpolations_are_resolved_or_left(tmp_path) -> None:
    config = {
        "seed": 0,
        "experiment_name": "crossing",
        "logger": {"group": "${experiment_name}-g", "dir": "${hydra:runtime.output_dir}"},
        "report": {"technique": "T ${experiment_name}", "baseline": {"model/crossing": "mlp"}},
    }
    write_job(tmp_path, "0", ["model/crossing=mlp"], metrics={"m": 1.0}, config=config)
    sweep = load_sweep(tmp_path)
    assert sweep.meta.wandb_group == "crossing-g"
    assert sweep.meta.technique == "T crossing"


def test_duplicate_arm_and_seed_is_an_error(tmp_path) -> None:
    write_job(tmp_path, "0", ["x=1", "seed=0"], metrics={"m": 1.0})
    write_job(tmp_path, "1", ["x=1", "seed=0"], metrics={"m": 2.0})
    with pytest.raises(SweepError, match="jobs 0 and 1"):
        load_sweep(tmp_path)


def test_not_a_sweep_dir(tmp_path) -> None:
    with pytest.raises(SweepError, match="not a directory"):
        load_sweep(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SweepError, match="not a sweep directory"):
        load_sweep(tmp_path / "empty")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"recall@100": NaN}', "non-finite value NaN"),
        ('{"recall@100": "high"}', "metric 'recall@100'"),
        ('{"recall@100": true}', "metric 'recall@100'"),
        ("[1, 2]", "expected a JSON object"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_metrics_file_names_file_and_key(tmp_path, content: str, message: str) -> None:
    job = write_job(tmp_path, "0", ["seed=0"])
    (job / "metrics.json").write_text(content)
    with pytest.raises(SweepError, match=message) as info:
        load_sweep(tmp_path)
    assert "0/metrics.json" in str(info.value)


def test_bad_overrides_and_report_node(tmp_path) -> None:
    job = write_job(tmp_path, "0", ["seed=0"])
    (job / ".hydra" / "overrides.yaml").write_text("seed: 0\n")
    with pytest.raises(SweepError, match=r"0/\.hydra/overrides\.yaml: expected a YAML list"):
        load_sweep(tmp_path)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["noequals"]))
    with pytest.raises(SweepError, match="not of the form key=value"):
        load_sweep(tmp_path)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["seed=0"]))
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"report": {"metrics": "recall@100"}}))
    with pytest.raises(SweepError, match=r"report\.metrics must be a list"):
        load_sweep(tmp_path)


def test_override_parsing_and_value_matching() -> None:
    assert parse_override("model/crossing=masknet", "f") == ("model/crossing", "masknet")
    assert parse_override("++data.config.x=a=b", "f") == ("data.config.x", "a=b")
    assert values_match("0.0", 0)
    assert values_match("0.0", "0")
    assert values_match("true", True)
    assert not values_match("1", True)
    assert not values_match("masknet", "mlp")
    assert values_match("mlp", "mlp")


def test_paper_lookup_by_value_pair_or_label() -> None:
    paper = {"masknet": "a", "b=2": "b", "x=1,y=2": "c"}
    assert paper_for_arm(paper, "model/crossing=masknet", {"model/crossing": "masknet"}) == "a"
    assert paper_for_arm(paper, "a=1,b=2", {"a": "1", "b": "2"}) == "b"
    assert paper_for_arm(paper, "x=1,y=2", {"x": "1", "y": "2"}) == "c"
    assert paper_for_arm(paper, "model/crossing=mlp", {"model/crossing": "mlp"}) is None
