"""One definition of an arm: the jobs' hydra.job.override_dirname, which is also their wandb job type."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from report_fixtures import CROSSING_REPORT, REPO, project_exclude_keys, write_job

from ebr.report.cli import main
from ebr.report.sweep import load_sweep

APP = """
import json, pathlib
import hydra
from hydra.core.hydra_config import HydraConfig

@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg):
    out = pathlib.Path(HydraConfig.get().runtime.output_dir)
    factor = {"mlp": 1.0, "masknet": 1.1}[cfg.model.crossing.name]
    (out / "job_type.txt").write_text(cfg.job_type)
    info = {"data_name": cfg.data.name, "data_source": "synthetic:" + cfg.data.name}
    (out / "run.json").write_text(json.dumps({"config": {}, "info": info}))
    (out / "metrics.json").write_text(json.dumps({"m": (1.0 + cfg.seed) * factor}))

main()
"""


def _hydra_sweep(tmp_path: Path, *overrides: str) -> Path:
    """Run a tiny Hydra app with the project's exclude keys and wandb job type; return the sweep dir.

    Its config groups mirror the project's (data, model/crossing, experiment with the sweep's params).
    """
    conf = tmp_path / "conf"
    for group, option, body in [
        ("data", "synthetic", {"name": "synthetic"}),
        ("data", "synthetic_tiny", {"name": "synthetic_tiny"}),
        ("model/crossing", "mlp", {"name": "mlp"}),
        ("model/crossing", "masknet", {"name": "masknet"}),
    ]:
        (conf / group).mkdir(parents=True, exist_ok=True)
        (conf / group / f"{option}.yaml").write_text(yaml.safe_dump(body))
    experiment = {
        "experiment_name": "crossing",
        "report": CROSSING_REPORT,
        "hydra": {"sweeper": {"params": {"model/crossing": "mlp,masknet"}}},
    }
    (conf / "experiment").mkdir()
    (conf / "experiment" / "crossing.yaml").write_text("# @package _global_\n" + yaml.safe_dump(experiment))
    wandb_logger = yaml.safe_load((REPO / "conf" / "logger" / "wandb.yaml").read_text())
    sweep = tmp_path / "sweep"
    config = {
        "defaults": ["_self_", {"data": "synthetic"}, {"model/crossing": "mlp"}, {"experiment": None}],
        "seed": 0,
        "experiment_name": "default",
        "report": None,
        "job_type": wandb_logger["job_type"],  # what the project's wandb logger gets as job type
        "hydra": {
            "sweep": {"dir": str(sweep), "subdir": "${hydra.job.num}"},
            "job": {"config": {"override_dirname": {"exclude_keys": project_exclude_keys()}}},
        },
    }
    (conf / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (tmp_path / "app.py").write_text(APP)
    done = subprocess.run(
        [sys.executable, "app.py", "-m", *overrides],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return sweep


def _job_types(sweep: Path) -> dict[str, str]:
    return {job.name: (job / "job_type.txt").read_text() for job in sweep.iterdir() if job.is_dir()}


def test_seed_and_constant_override_give_one_arm_named_like_the_job_type(tmp_path) -> None:
    sweep = _hydra_sweep(tmp_path, "seed=0,1", "data=synthetic_tiny")
    assert set(_job_types(sweep).values()) == {"data=synthetic_tiny"}
    assert main([str(sweep), "--bootstrap", "0"]) == 0
    report = json.loads((sweep / "report.json").read_text())
    assert report["arms"] == ["data=synthetic_tiny"]
    assert report["seeds"] == ["0", "1"]
    row = report["results"]["m"]["data=synthetic_tiny"]
    assert (row["n"], row["mean"]) == (2, pytest.approx((1.0 + 2.0) / 2))
    assert report["data"][0]["name"] == "synthetic_tiny"


def test_experiment_sweep_arms_are_the_job_types_and_pair_by_seed(tmp_path) -> None:
    sweep = _hydra_sweep(tmp_path, "experiment=crossing", "seed=0,1,2", "data=synthetic_tiny")
    assert main([str(sweep), "--bootstrap", "0"]) == 0
    report = json.loads((sweep / "report.json").read_text())
    types = _job_types(sweep)
    for arm in report["arms"]:
        jobs = [p for p in sweep.iterdir() if p.is_dir() and types[p.name] == arm]
        assert len(jobs) == 3  # one job per seed carries this arm's job type
    assert sorted(report["arms"]) == sorted(set(types.values()))
    mlp = "data=synthetic_tiny,model/crossing=mlp"
    assert report["baseline"] == mlp  # report.baseline {model/crossing: mlp} picks it by its values
    assert report["arm_short_labels"][mlp] == "model/crossing=mlp"
    masknet = report["results"]["m"]["data=synthetic_tiny,model/crossing=masknet"]
    # every seed's value is 1.1 x the baseline's: each paired delta is 0.1
    assert masknet["delta"]["n_pairs"] == 3
    assert masknet["delta"]["per_seed"] == pytest.approx({"0": 0.1, "1": 0.1, "2": 0.1})
    assert masknet["paper"] == CROSSING_REPORT["paper"]["masknet"]
    md = (sweep / "report.md").read_text()
    assert "| model/crossing=masknet | 3 |" in md  # tables show the short label
    assert f"`{mlp}`" in md  # the header lists the full labels


def test_added_key_arm_equals_the_job_type(tmp_path) -> None:
    sweep = _hydra_sweep(tmp_path, "seed=0,1", "data=synthetic_tiny", "+extra=1")
    assert main([str(sweep), "--bootstrap", "0"]) == 0
    report = json.loads((sweep / "report.json").read_text())
    assert report["arms"] == sorted(set(_job_types(sweep).values()))


def test_fixture_arm_equals_hydra_override_dirname(make_sweep) -> None:
    values = {(arm, seed): {"m": 1.0 + seed} for arm in ("mlp", "dhen") for seed in (0, 1)}
    sweep_dir = make_sweep(
        values, extra_overrides=("data=synthetic_tiny", "trainer.enable_progress_bar=false")
    )
    sweep = load_sweep(sweep_dir)
    for job in sweep.jobs:
        hydra = yaml.safe_load((job.path / ".hydra" / "hydra.yaml").read_text())
        assert job.arm.label == hydra["hydra"]["job"]["override_dirname"]
    assert sweep.arms == ["data=synthetic_tiny,model/crossing=mlp", "data=synthetic_tiny,model/crossing=dhen"]
    assert sweep.arm_keys == ["model/crossing"]
    assert sweep.arm_short["data=synthetic_tiny,model/crossing=dhen"] == "model/crossing=dhen"
    assert main([str(sweep_dir), "--baseline", "model/crossing=mlp", "--bootstrap", "0"]) == 0
    report = json.loads((sweep_dir / "report.json").read_text())
    assert report["baseline"] == "data=synthetic_tiny,model/crossing=mlp"
    assert report["arm_values"][report["baseline"]] == {"data": "synthetic_tiny", "model/crossing": "mlp"}


def test_old_sweep_without_hydra_yaml_still_loads(make_sweep) -> None:
    values = {
        (arm, seed): {"m": (1.0 + seed) * f} for arm, f in (("mlp", 1.0), ("masknet", 1.5)) for seed in (0, 1)
    }
    sweep_dir = make_sweep(values, report=CROSSING_REPORT, hydra_yaml=False)
    sweep = load_sweep(sweep_dir)
    # without hydra.yaml only the seed is excluded, so the constant experiment= stays in the label
    assert sweep.arms == [
        "experiment=crossing,model/crossing=mlp",
        "experiment=crossing,model/crossing=masknet",
    ]
    assert sweep.arm_short["experiment=crossing,model/crossing=masknet"] == "model/crossing=masknet"
    assert main([str(sweep_dir), "--bootstrap", "0"]) == 0
    report = json.loads((sweep_dir / "report.json").read_text())
    masknet = report["results"]["m"]["experiment=crossing,model/crossing=masknet"]
    assert masknet["delta"]["rel_mean"] == pytest.approx(0.5)
    assert masknet["paper"] == CROSSING_REPORT["paper"]["masknet"]


def test_hydra_yaml_that_keeps_the_seed_still_pairs_by_seed(tmp_path) -> None:
    # Hydra's default exclude_keys is empty: a sweep from before conf/train.yaml set them
    for i, (arm, seed) in enumerate([("mlp", 0), ("mlp", 1), ("dhen", 0), ("dhen", 1)]):
        value = (1.0 + seed) * (2.0 if arm == "dhen" else 1.0)
        write_job(tmp_path, str(i), [f"model/crossing={arm}", f"seed={seed}"], {"m": value}, exclude_keys=[])
    sweep = load_sweep(tmp_path)
    assert sweep.arms == ["model/crossing=mlp", "model/crossing=dhen"]
    assert sweep.seeds == ["0", "1"]
    assert main([str(tmp_path), "--baseline", "model/crossing=mlp", "--bootstrap", "0"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["results"]["m"]["model/crossing=dhen"]["delta"]["per_seed"] == {"0": 1.0, "1": 1.0}


def test_malformed_hydra_yaml_names_the_file(make_sweep, capsys) -> None:
    sweep = make_sweep({("mlp", 0): {"m": 1.0}})
    (sweep / "0" / ".hydra" / "hydra.yaml").write_text(
        yaml.safe_dump({"hydra": {"job": {"config": {"override_dirname": {"exclude_keys": "seed"}}}}})
    )
    assert main([str(sweep)]) == 2
    assert "0/.hydra/hydra.yaml" in capsys.readouterr().err
