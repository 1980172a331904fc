"""The "found when tried as a new user" items of the reliability issue, each through `ebr-train`:
a changed setting refused (not skipped), a sweep whose every job failed, the quiet console with
its end-of-job table, an error printed once, and no secret written anywhere.

(`ebr-report` exiting 3 when no run finished is tests/report/test_report_cli.py's
`test_wandb_summary_...` / no-finished-run test.)
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from jobs import REPO, job_env, run_module, train_in_process

QUICK = ["data=synthetic_tiny", "trainer.enable_progress_bar=false", "logger=none", "trainer.max_epochs=1"]
NO_TRAINING = [*QUICK, "model=popularity", "eval.simulation.users=200"]
SENTINEL = "ebr-secret-sentinel-3f9a"


def test_a_changed_setting_is_refused_not_skipped(tmp_path, monkeypatch, capsys) -> None:
    sweep = tmp_path / "sweep"
    args = ["-m", *NO_TRAINING, f"hydra.sweep.dir={sweep}"]
    code, out = train_in_process(monkeypatch, capsys, args)
    assert code == 0, out[-3000:]
    finished = (sweep / "0" / "metrics.json").stat().st_mtime_ns
    config = (sweep / "0" / ".hydra" / "config.yaml").read_text()
    code, out = train_in_process(monkeypatch, capsys, [*args, "eval.simulation.users=100"])
    assert code == 1
    assert "eval.simulation.users: 200 -> 100" in out
    assert "sweep: 1 refused" in out
    assert (sweep / "0" / "metrics.json").stat().st_mtime_ns == finished
    assert (sweep / "0" / ".hydra" / "config.yaml").read_text() == config, "old results keep their config"


def test_a_sweep_whose_every_job_failed_exits_non_zero_with_a_tally(tmp_path, monkeypatch, capsys) -> None:
    sweep = tmp_path / "sweep"
    code, out = train_in_process(
        monkeypatch, capsys, ["-m", *QUICK, "train.batch_size=0,-1", f"hydra.sweep.dir={sweep}"]
    )
    assert code == 1
    assert "sweep: 2 failed" in out
    assert "train.batch_size=0: must be an integer >= 1" in out
    assert not list(sweep.glob("*/metrics.json"))


def test_a_failed_job_prints_its_error_once_useful_line_first(tmp_path, monkeypatch, capsys) -> None:
    code, out = train_in_process(
        monkeypatch, capsys, [*QUICK, "train.logq=exactly", f"hydra.run.dir={tmp_path}"]
    )
    assert code == 1
    assert out.count("train.logq='exactly'") == 1, out
    lines = [line for line in out.splitlines() if "job failed" in line]
    assert len(lines) == 1
    assert "ConfigValidationError: invalid config, found before any work: train.logq='exactly'" in lines[0]
    assert "Traceback" not in out, "the traceback is in error.txt, not on the console"
    assert "Traceback" in (tmp_path / "error.txt").read_text()


@pytest.fixture(scope="module")
def console_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One real `ebr-train` process (third-party libraries load inside it) with wandb offline."""
    run_dir = tmp_path_factory.mktemp("console")
    # Python's warnings not silenced: the console is checked as a user's shell shows it
    env = job_env(WANDB_API_KEY=SENTINEL, PYTHONWARNINGS=None)
    result = run_module("ebr.train", [*QUICK, "logger=wandb", f"hydra.run.dir={run_dir}"], env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    return run_dir, result


def test_a_quiet_console_ending_with_a_table_of_headline_metrics(console_run) -> None:
    run_dir, result = console_run
    out = result.stdout + result.stderr
    for noise in ("Successfully loaded: 'fbgemm", "[TBE=", "Loading faiss", "faiss.loader", "Tip:"):
        assert noise not in out, noise
    table = out[out.index("job finished:") :].splitlines()
    assert str(run_dir / "metrics.json") in table[0]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    rows = {line.split()[0]: line.split()[1] for line in table[3:8] if line.strip()}
    assert set(rows) == {
        "recall@100",
        "ndcg@100",
        "popularity/recall@100",
        "sim/engaged_sessions",
        "sim/repins",
    }
    assert float(rows["recall@100"]) == pytest.approx(metrics["recall@100"], rel=1e-3)


def test_no_secret_is_written_into_configs_logs_or_reports(console_run) -> None:
    run_dir, result = console_run
    assert list((run_dir / "wandb").glob("offline-run-*")), "the job logged to wandb offline"
    assert SENTINEL not in result.stdout + result.stderr
    leaked = [str(p) for p in run_dir.rglob("*") if p.is_file() and SENTINEL.encode() in p.read_bytes()]
    assert not leaked, leaked


def test_the_model_artifact_carries_a_manifest_and_is_served_only_on_its_data(console_run) -> None:
    import numpy as np

    from ebr.data.world import WorldConfig, generate_world
    from ebr.models.artifact import ARTIFACT_FORMAT, load_artifact
    from ebr.serving.index import IndexConfig
    from ebr.serving.service import RetrievalService

    run_dir, _ = console_run
    record = json.loads((run_dir / "run.json").read_text())
    _, payload = load_artifact(run_dir / "model.pt")  # weights_only=True: nothing unpickled
    manifest = payload["info"]
    assert manifest["format"] == ARTIFACT_FORMAT
    assert manifest["data_source"] == record["info"]["data_source"]
    assert (manifest["user_rows"], manifest["pin_rows"]) == (1500, 800)
    other = generate_world(WorldConfig(n_users=300, n_pins=150, n_interests=12, n_days=30))
    with pytest.raises(ValueError, match=r"model\.pt: the model was trained on other data: data_source"):
        RetrievalService.from_artifact(run_dir / "model.pt", other, np.arange(10), IndexConfig())


def test_every_torch_load_in_ebr_is_weights_only() -> None:
    import re

    calls = []
    for path in sorted((REPO / "ebr").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"torch\.load\(", text):
            end = text.index(")", match.end())
            calls.append((path.name, text[match.start() : end + 1]))
    assert calls, "ebr loads tensors somewhere"
    unsafe = [(name, call) for name, call in calls if "weights_only=True" not in call]
    assert not unsafe, unsafe
