"""What a job prints and what it loads (issue "Real data as a researcher meets it", items 3 and 4):
a baseline job imports no torch, torchrec, fbgemm or Lightning; a two-tower run's console holds no
FutureWarning, no empty-loader warning under refit, and counts epochs as the user set them; the
verbose switch silences nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

from hydra import compose
from jobs import REPO, job_env, run_module

from ebr.runs.console import HARMLESS_WARNINGS, quiet_console
from ebr.train import job_notice

HEAVY = ("torch", "torchrec", "fbgemm_gpu", "pytorch_lightning", "lightning_fabric", "lightning")
# runs a job through the console script's main, then prints which heavy packages it loaded
LOADED = (
    "import atexit, json, sys\n"
    f"heavy = {HEAVY!r}\n"
    "atexit.register(lambda: print('LOADED=' + json.dumps(sorted(m for m in heavy if m in sys.modules))))\n"
    "from ebr.train import main\n"
    "sys.argv = ['ebr-train', *sys.argv[1:]]\n"
    "main()\n"
)


def _env() -> dict[str, str]:
    # Python's warnings stay on: which ones reach the console is what is checked
    return job_env(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", PYTHONWARNINGS=None)


def test_a_baseline_job_imports_no_torch_torchrec_fbgemm_or_lightning(tmp_path) -> None:
    args = ["data=synthetic_tiny", "model=popularity", "logger=none", f"hydra.run.dir={tmp_path}"]
    command = [sys.executable, "-c", LOADED, *args]
    done = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "metrics.json").is_file()
    loaded = json.loads(done.stdout.split("LOADED=")[-1].splitlines()[0])
    assert loaded == [], f"a popularity job loaded {loaded}"


def test_a_refit_two_tower_run_speaks_briefly_and_counts_epochs_as_set(tmp_path) -> None:
    args = [
        "data=synthetic_tiny",
        "eval=refit",
        "trainer.max_epochs=2",
        "logger=none",
        f"hydra.run.dir={tmp_path}",
    ]
    done = run_module("ebr.train", args, timeout=300, env=_env())
    assert done.returncode == 0, done.stderr[-3000:]
    console = done.stdout + done.stderr
    assert "FutureWarning" not in done.stderr, done.stderr[-3000:]
    assert "across ranks is zero" not in console, "refit has no validation loader to warn about"
    assert "Epoch 2/2" in console, "the last epoch of max_epochs=2 is epoch 2 of 2"
    assert "Epoch 1/1" not in console
    assert "fit TwoTowerRetriever: " in done.stdout, "a timed line for the stage that takes seconds"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["train/epochs"] == 2.0
    assert "final_val_loss" not in metrics, "no validation loop under refit"


def test_the_quiet_console_filters_only_the_listed_warnings_and_verbose_none() -> None:
    assert all(harmless.reason for harmless in HARMLESS_WARNINGS), "each filter says why"
    message = "HeuristicalStorageReservation is known to cause issues, particularly during dry run"
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_console(verbose=True)
        warnings.warn(message, FutureWarning, stacklevel=1)
        quiet_console(verbose=False)
        warnings.warn(message, FutureWarning, stacklevel=1)
        warnings.warn("an unlisted deprecation", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == [message, "an unlisted deprecation"]


def test_data_movielens_without_an_experiment_names_the_tuned_command(hydra_conf) -> None:
    def notice(*overrides: str, experiment: str | None = None) -> str | None:
        cfg = compose(config_name="train", overrides=list(overrides))
        return job_notice(cfg, experiment)

    line = notice("data=movielens", "data.path=ml/small")
    assert line is not None
    assert "`ebr-train experiment=movielens_tuned data.path=ml/small`" in line
    assert notice("data=movielens", "data.path=ml/small", experiment="movielens_tuned") is None, (
        "an experiment was chosen"
    )
    assert notice("data=movielens", "data.path=ml/small", "model=ease") is None, "a baseline tunes itself"
    assert notice() is None, "the synthetic world picks no notice"
