"""wandb dashboards of a sweep: the runs' config columns and tags, the report run, the workspace, the sync.

One real tiny sweep (`ebr-train -m`, 2 crossing arms, one seed, a few batches each) and one
`ebr-report --wandb --wandb-workspace` on it; everything is read back from the files wandb wrote
offline (ebr.report.wandb_offline) and checked against the run directories' own files.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from jobs import job_env, run_module

from ebr.report.cli import main
from ebr.report.wandb_offline import latest_offline_run, read_offline_run, read_records
from ebr.report.wandb_summary import TABLE_COLUMNS
from ebr.report.wandb_sync import SyncError, sweep_run_dirs, sync_command, sync_sweep
from ebr.report.wandb_workspace import WORKSPACE_FILE, load_workspace, workspace_json
from ebr.runs import run_labels

SWEEP_ARGS = [
    "data=synthetic_tiny",
    "model/crossing=mlp,masknet",
    "seed=0",
    "trainer.enable_progress_bar=false",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=3",
    "+trainer.limit_val_batches=2",
    "trainer.log_every_n_steps=1",
]
HEADLINE = ["recall@100", "sim/repins"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("dashboard") / "sweep"
    done = run_module(
        "ebr.train", ["-m", *SWEEP_ARGS, f"hydra.sweep.dir={directory}"], env=job_env(WANDB_API_KEY=None)
    )
    assert done.returncode == 0, done.stderr[-4000:]
    args = [str(directory), "--baseline", "model/crossing=mlp", "--metrics", ",".join(HEADLINE)]
    assert main([*args, "--bootstrap", "0", "--wandb", "--wandb-workspace", "ent/proj"]) == 0
    return directory


def _approx(value: float | None) -> object:
    return None if value is None else pytest.approx(value)


def _names(metrics: list) -> list[str]:
    """Panel metric names (a loaded workspace holds them as Metric objects, a built one as text)."""
    return [getattr(metric, "name", metric) for metric in metrics]


def _jobs(sweep: Path) -> list[Path]:
    return sorted(p for p in sweep.iterdir() if p.is_dir() and (p / ".hydra").is_dir())


def test_job_runs_carry_arm_columns_tags_data_hash_and_metric_names(sweep: Path) -> None:
    jobs = _jobs(sweep)
    assert len(jobs) == 2
    for job in jobs:
        run = read_offline_run(latest_offline_run(job / "wandb"))
        record = json.loads((job / "run.json").read_text())
        overrides = dict(
            line.split("=", 1) for line in yaml.safe_load((job / ".hydra/overrides.yaml").read_text())
        )
        config = yaml.safe_load((job / ".hydra/config.yaml").read_text())
        assert run.job_type == record["arm"][:64]  # wandb's limit; the arm column holds all of it
        assert run.group == "default"
        assert run.config["arm"] == record["arm"]
        assert "model/crossing=" + overrides["model/crossing"] in record["arm"]
        # the swept group as a column, and its option's scalar keys beside it
        assert run.config["crossing"] == overrides["model/crossing"]
        for key, value in config["model"]["crossing"].items():
            if not key.startswith("_") and not isinstance(value, dict | list):
                assert run.config[f"crossing_{key}"] == value, key
        assert run.config["data_choice"] == "synthetic_tiny"  # `data` is a config key: suffixed
        assert run.config["seed"] == int(overrides["seed"])
        assert run.config["data_fingerprint"] == record["info"]["data_fingerprint"]
        assert set(run.tags) >= {"experiment:default", f"arm:{record['arm']}"[:64]}
        # final metrics and curves under metrics.json's / history.json's names
        metrics = json.loads((job / "metrics.json").read_text())
        for name in ("recall@100", "sim/repins", "final_train_loss"):
            assert run.summary[name] == pytest.approx(metrics[name])
        history = json.loads((job / "history.json").read_text())
        assert {"train/loss", "val/loss"} <= set(history) & run.history_keys
        assert run.exit_code == 0
    # one world for the whole sweep: the same data hashes in every run
    hashes = {read_offline_run(latest_offline_run(j / "wandb")).config["data_config_hash"] for j in jobs}
    assert len(hashes) == 1


def test_report_run_table_equals_report_json(sweep: Path) -> None:
    report = json.loads((sweep / "report.json").read_text())
    run_dir = latest_offline_run(sweep / "wandb")
    run = read_offline_run(run_dir)
    assert (run.job_type, run.group, run.config["arm"]) == ("report", "default", "report")
    assert run.tags == ("experiment:default", "arm:report")
    table = json.loads((run_dir / "files" / run.summary["report/table/path"]).read_text())
    assert table["columns"] == TABLE_COLUMNS
    rows = [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
    expected = [(metric, arm) for metric, arms in report["results"].items() for arm in arms]
    assert [(row["metric"], row["arm"]) for row in rows] == expected
    for row in rows:
        want = report["results"][row["metric"]][row["arm"]]
        delta = want["delta"] or {}
        assert (row["n"], row["paper"], row["std"]) == (want["n"], want["paper"], want["std"])
        assert row["mean"] == pytest.approx(want["mean"])
        assert row["rel_delta"] == _approx(delta.get("rel_mean"))
        assert row["p_value"] == _approx(delta.get("p_value"))
        assert [row["t_ci_low"], row["t_ci_high"]] == [_approx(v) for v in delta.get("t_ci") or [None, None]]
        assert row["headline"] == (row["metric"] in report["headline_metrics"])
    for metric in HEADLINE:  # one bar chart image per headline metric, and the deltas figure
        assert (run_dir / "files" / run.summary[f"report/bars/{metric}/path"]).is_file()
    assert (run_dir / "files" / run.summary["report/deltas/path"]).is_file()


def test_workspace_has_a_panel_per_headline_metric_and_the_sweeps_runset(sweep: Path) -> None:
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    path = sweep / WORKSPACE_FILE
    saved = json.loads(path.read_text())
    workspace = load_workspace(path)
    assert workspace_json(workspace) == saved  # loads back into the same object
    assert (workspace.entity, workspace.project) == ("ent", "proj")
    sections = {section.name: section for section in workspace.sections}
    bars = sections["Headline metrics"].panels
    assert [type(panel) for panel in bars] == [wr.BarPlot] * len(HEADLINE)
    assert [_names(panel.metrics) for panel in bars] == [[metric] for metric in HEADLINE]
    curves = sections["Training curves"].panels
    assert sorted(_names(panel.y) for panel in curves) == [["train/loss"], ["val/loss"]]
    assert any(getattr(p, "table_name", None) == "report/table" for p in sections["Report"].panels)
    # the runset: the sweep's group only, grouped by arm
    settings = workspace.runset_settings
    assert [(g.section, g.name) for g in settings.groupby] == [("config", "arm")]
    (leaf,) = saved["view"]["spec"]["section"]["runSets"][0]["filters"]["filters"]
    assert (leaf["key"], leaf["op"], leaf["value"]) == ({"section": "run", "name": "group"}, "=", "default")
    assert isinstance(workspace, ws.Workspace)
    assert "config:crossing" in settings.pinned_columns


def test_workspace_save_and_target_fail_clearly_offline(sweep: Path, tmp_path, monkeypatch, capsys) -> None:
    from ebr.report import wandb_workspace

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_IDENTITY_TOKEN_FILE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "absent"))
    assert wandb_workspace.main([str(sweep / WORKSPACE_FILE)]) == 1
    assert "WANDB_API_KEY" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    assert wandb_workspace.main([str(tmp_path / "bad.json")]) == 1
    assert "bad.json: not an ebr workspace file" in capsys.readouterr().err
    assert main([str(sweep), "--wandb-workspace", "no-slash"]) == 2  # before any work
    assert "ENTITY/PROJECT" in capsys.readouterr().err


def test_sync_lists_every_jobs_newest_run_and_the_report_run(sweep: Path, tmp_path, monkeypatch) -> None:
    jobs = _jobs(sweep)
    runs = sweep_run_dirs(sweep, jobs)
    expected = [sorted((job / "wandb").glob("offline-run-*"))[-1] for job in jobs]
    expected.append(sorted((sweep / "wandb").glob("offline-run-*"))[-1])
    assert runs == expected
    for run in runs:
        assert read_records(next(run.glob("run-*.wandb")))  # each is a readable offline run
    command = sync_command(runs, "ent", "proj")
    assert Path(command[0]).name == "wandb"
    assert command[1:6] == ["sync", "--entity", "ent", "--project", "proj"]
    assert command[6:] == [str(run) for run in runs]

    # no key anywhere: a clear error at once, nothing started
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_IDENTITY_TOKEN_FILE", raising=False)
    (tmp_path / "netrc").write_text("machine example.org login user password secret\n")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    started: list[list[str]] = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: started.append(cmd))
    with pytest.raises(SyncError, match="WANDB_API_KEY"):
        sync_sweep(sweep, jobs)
    written_at = (sweep / "report.json").stat().st_mtime_ns
    began = time.monotonic()
    assert main([str(sweep), "--bootstrap", "0", "--wandb-sync"]) == 1
    assert time.monotonic() - began < 30
    assert started == []
    assert (sweep / "report.json").stat().st_mtime_ns == written_at  # refused before any work

    # with a key, the command is wandb sync of exactly those directories, online
    secret = "ebr-test-key-0123456789"
    monkeypatch.setenv("WANDB_API_KEY", secret)
    calls: list[tuple[list[str], dict[str, str]]] = []
    monkeypatch.setattr(
        subprocess,
        "run",
        lambda cmd, env, check: calls.append((cmd, env)) or subprocess.CompletedProcess(cmd, 0),
    )
    assert sync_sweep(sweep, jobs, "ent", "proj") == runs
    ((cmd, env),) = calls
    assert cmd == command
    assert env["WANDB_MODE"] == "online"
    written = [p for p in sweep.rglob("*") if p.is_file() and p.suffix in {".json", ".yaml", ".md", ".log"}]
    assert not [p for p in written if secret in p.read_text(errors="ignore")]


def test_arm_columns_of_corpus_and_value_overrides(tmp_path: Path) -> None:
    job = tmp_path / "job"
    (job / ".hydra").mkdir(parents=True)
    overrides = ["corpus=time_decay", "corpus.remap_image_signature=true", "seed=3", "train.dense_lr=0.01"]
    (job / ".hydra/overrides.yaml").write_text(yaml.safe_dump(overrides))
    hydra = {"hydra": {"runtime": {"choices": {"corpus": "time_decay", "data": "synthetic"}}}}
    (job / ".hydra/hydra.yaml").write_text(yaml.safe_dump(hydra))
    config = {
        "seed": 3,
        "experiment_name": "corpus",
        "corpus": {
            "_target_": "x.Policy",
            "scoring": "time_decay",
            "remap_image_signature": True,
            "size": 0.1,
        },
        "train": {"dense_lr": 0.01},
        "data": {"name": "synthetic", "config": {"seed": 7}},
    }
    labels = run_labels(job, config)
    assert labels.columns["arm"] == "corpus.remap_image_signature=true,corpus=time_decay,train.dense_lr=0.01"
    assert labels.columns["corpus_choice"] == "time_decay"  # `corpus` itself is the nested config
    assert labels.columns["corpus_scoring"] == "time_decay"
    assert labels.columns["corpus_size"] == 0.1
    assert labels.columns["corpus_remap_image_signature"] is True
    assert labels.columns["train_dense_lr"] == 0.01
    assert "seed" not in labels.columns
    assert not [name for name in labels.columns if "_target_" in name]
    assert labels.tags == ("experiment:corpus", f"arm:{labels.columns['arm']}")
    other = run_labels(job, {**config, "data": {"name": "synthetic", "config": {"seed": 8}}})
    assert other.columns["data_config_hash"] != labels.columns["data_config_hash"]
