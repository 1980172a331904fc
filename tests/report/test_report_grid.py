"""The expected grid comes from the sweep's own record (multirun.yaml), not from its job folders.

The sweeps are real Hydra multiruns of ebr-train's config (conf/train.yaml: its sweeper, exclude
keys and experiment files) whose task is a stub writing a metrics.json, so Hydra writes
multirun.yaml and every job's .hydra/ exactly as for a training sweep, in seconds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from report_fixtures import REPO

from ebr.report.cli import EXIT_INCOMPLETE, main
from ebr.report.grid import read_expected_grid

# a task with ebr-train's config that "finishes" at once: metrics depend on the arm and the seed
STUB = """
import json, sys
from pathlib import Path
import hydra
from hydra.core.hydra_config import HydraConfig
from ebr.app import CONFIG_DIR
from ebr.config import register_schemas

@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def stub(cfg):
    out = Path(HydraConfig.get().runtime.output_dir)
    crossing = HydraConfig.get().runtime.choices.get("model/crossing", "none")
    value = 0.5 + 0.01 * int(cfg.seed) + (0.05 if crossing != "mlp" else 0.0)
    (out / "metrics.json").write_text(json.dumps({"recall@100": value}))

register_schemas()
stub()
"""


def _sweep(tmp_path: Path, name: str, overrides: list[str]) -> Path:
    sweep_dir = tmp_path / name
    script = tmp_path / "stub.py"
    script.write_text(STUB)
    command = [sys.executable, str(script), "-m", *overrides, f"hydra.sweep.dir={sweep_dir}"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep_dir


def _job_dirs(sweep_dir: Path, seed: str) -> list[Path]:
    return [
        child
        for child in sweep_dir.iterdir()
        if (child / ".hydra/overrides.yaml").is_file()
        and f"seed={seed}" in yaml.safe_load((child / ".hydra/overrides.yaml").read_text())
    ]


def test_deleted_seed_jobs_of_a_command_line_sweep_are_missing_and_the_exit_is_4(tmp_path, capsys) -> None:
    """Issue 32, case 1: delete both seed-1 jobs of a 2-arm x 2-seed sweep: they are missing."""
    sweep_dir = _sweep(
        tmp_path, "cli", ["model/crossing=mlp,masknet", "seed=0,1", "data=synthetic_tiny", "logger=none"]
    )
    assert main([str(sweep_dir), "--bootstrap", "0"]) == 0, "the whole sweep is complete"
    gone = _job_dirs(sweep_dir, "1")
    assert len(gone) == 2
    for job in gone:
        shutil.rmtree(job)

    assert main([str(sweep_dir), "--bootstrap", "0"]) == EXIT_INCOMPLETE
    assert "0 failed, 2 missing of 4 expected runs" in capsys.readouterr().err
    report = json.loads((sweep_dir / "report.json").read_text())
    assert (report["n_runs"], report["expected_runs"], report["n_missing"]) == (2, 4, 2)
    missing = sorted((p["arm"], p["seed"]) for p in report["missing"])
    assert missing == [
        ("data=synthetic_tiny,model/crossing=masknet", "1"),
        ("data=synthetic_tiny,model/crossing=mlp", "1"),
    ]
    # each missing job is named by its overrides
    names = [p["name"] for p in report["missing"]]
    assert any("model/crossing=mlp seed=1 data=synthetic_tiny logger=none" in name for name in names), names
    md = (sweep_dir / "report.md").read_text()
    assert md.splitlines()[0].startswith("# ebr report: INCOMPLETE (0 failed, 2 missing of 4 expected runs)")
    assert "no job directory (expected by multirun.yaml)" in md

    assert main([str(sweep_dir), "--bootstrap", "0", "--allow-incomplete"]) == 0


def test_an_experiment_files_sweeper_params_make_the_grid(tmp_path) -> None:
    """`hydra.sweeper.params` (experiment=crossing: 4 crossings x seeds) with a command-line seed list."""
    sweep_dir = _sweep(tmp_path, "exp", ["experiment=crossing", "seed=0,1", "data=synthetic_tiny"])
    grid = read_expected_grid(sweep_dir)
    assert grid is not None
    assert grid.jobs is not None
    assert len(grid.jobs) == 8
    on_disk = sorted(
        sorted(yaml.safe_load((child / ".hydra/overrides.yaml").read_text()))
        for child in sweep_dir.iterdir()
        if child.is_dir()
    )
    assert sorted(sorted(job) for job in grid.jobs) == on_disk, "the expansion is Hydra's own"

    # a whole arm gone: its two jobs are missing although no folder of it is left
    arm_jobs = [
        child
        for child in sweep_dir.iterdir()
        if child.is_dir() and "model/crossing=dhen_cpu" in (child / ".hydra/overrides.yaml").read_text()
    ]
    assert len(arm_jobs) == 2
    for job in arm_jobs:
        shutil.rmtree(job)
    assert main([str(sweep_dir), "--bootstrap", "0"]) == EXIT_INCOMPLETE
    report = json.loads((sweep_dir / "report.json").read_text())
    assert report["n_missing"] == 2
    assert {p["arm"] for p in report["missing"]} == {"data=synthetic_tiny,model/crossing=dhen_cpu"}


@pytest.mark.parametrize("recorded_in", ["multirun.yaml", "job"])
def test_a_search_has_no_fixed_grid(make_sweep, recorded_in: str) -> None:
    """An Optuna search records its trials: no grid to hold them against, the note says so. Its
    sweeper writes no multirun.yaml: the jobs' .hydra/hydra.yaml tell."""
    sweep_dir = make_sweep({("mlp", 0): {"recall@100": 0.5}, ("mlp", 1): {"recall@100": 0.6}})
    sweeper = {"_target_": "hydra_plugins.ebr_search.ResumableOptunaSweeper", "n_trials": 30}
    if recorded_in == "multirun.yaml":
        record = {
            "hydra": {"sweeper": sweeper, "overrides": {"task": ["hparams_search=two_tower_synthetic"]}}
        }
        (sweep_dir / "multirun.yaml").write_text(yaml.safe_dump(record))
    else:
        (sweep_dir / "multirun.yaml").unlink()
        for job in ("0", "1"):
            path = sweep_dir / job / ".hydra" / "hydra.yaml"
            node = yaml.safe_load(path.read_text())
            node["hydra"]["sweeper"] = sweeper
            path.write_text(yaml.safe_dump(node))
    grid = read_expected_grid(sweep_dir)
    assert grid is not None
    assert grid.jobs is None
    assert grid.n_trials == 30
    assert main([str(sweep_dir), "--bootstrap", "0"]) == 0
    notes = json.loads((sweep_dir / "report.json").read_text())["notes"]
    assert any("2 trial(s) recorded of 30 requested; no fixed grid" in note for note in notes), notes


@pytest.mark.parametrize("text", ["hydra: {overrides: {task: 3}}\n", "hydra: [\n"])
def test_a_malformed_multirun_yaml_is_bad_input_naming_it(make_sweep, capsys, text: str) -> None:
    sweep_dir = make_sweep({("mlp", 0): {"recall@100": 0.5}})
    (sweep_dir / "multirun.yaml").write_text(text)
    assert main([str(sweep_dir)]) == 2
    assert "multirun.yaml" in capsys.readouterr().err


def test_two_grids_in_one_folder_and_worlds(tmp_path) -> None:
    """Two -m calls into one folder (the first's record kept as multirun.first.yaml, as
    scripts/reproduce.sh does) expect both grids; data.config.seed is a world, never an arm."""
    base = ["experiment=crossing", "data=synthetic_tiny", "seed=0,1", "data.config.seed=0,1"]
    sweep_dir = _sweep(tmp_path, "two", [*base, "model/crossing=mlp,masknet"])
    (sweep_dir / "multirun.yaml").rename(sweep_dir / "multirun.first.yaml")
    _sweep(tmp_path, "two", [*base, "model/crossing=dhen_cpu", "hydra.sweep.subdir=u${hydra.job.num}"])
    grid = read_expected_grid(sweep_dir)
    assert grid is not None
    assert len(grid.jobs or []) == 12
    assert main([str(sweep_dir), "--bootstrap", "100"]) == 0
    report = json.loads((sweep_dir / "report.json").read_text())
    assert report["worlds"] == ["0", "1"]
    assert report["expected_runs"] == 12
    assert len(report["arms"]) == 3
    assert not [note for note in report["notes"] if "not in the grid" in note]
