"""The code a sweep's numbers came from: one commit per report, mixed code refused unless allowed,
and the suite's README naming commits and sweep folders without paths of this machine."""

from __future__ import annotations

import json
from pathlib import Path

from report_fixtures import CROSSING_REPORT

from ebr.report.cli import main as report_main
from ebr.report.suite import display_path
from ebr.report.suite import main as suite_main

OLD = "1111111111111111111111111111111111111111"
NEW = "2222222222222222222222222222222222222222"
PACKAGES = {"torch": "2.0", "torchrec": "1.0", "faiss": None, "lightning": "2.1", "hydra": "1.3"}


def _identity(commit: str, diff: str | None = None) -> dict:
    return {
        "git_commit": commit,
        "git_diff_sha256": diff,
        "git_note": None,
        "ebr_version": "0.1.0",
        "packages": PACKAGES,
    }


def _sweep(make_sweep, code_of, name: str = "sweep") -> Path:
    """Two arms x 3 seeds, finished, each job's run.json holding the code identity `code_of(job)`."""
    values = {
        (arm, seed): {"recall@100": 0.2 + 0.01 * seed + (0.02 if arm == "masknet" else 0.0)}
        for arm in ("mlp", "masknet")
        for seed in range(3)
    }
    sweep = make_sweep(values, report=CROSSING_REPORT, info={"data_name": "synthetic_small"}, name=name)
    for record_path in sorted(sweep.glob("*/run.json")):
        record = json.loads(record_path.read_text())
        record["code"] = code_of(record_path.parent.name)
        record_path.write_text(json.dumps(record))
    return sweep


def test_a_sweep_of_mixed_code_is_refused_unless_allowed_then_listed(make_sweep, capsys) -> None:
    sweep = _sweep(make_sweep, lambda job: _identity(OLD if job in ("0", "1") else NEW, None))
    assert report_main([str(sweep), "--bootstrap", "0"]) == 2
    err = capsys.readouterr().err
    assert "2 different code identities" in err
    assert f"{NEW[:12]}: 4 job(s)" in err
    assert f"{OLD[:12]}: 2 job(s) (0, 1)" in err
    assert "--allow-mixed-code" in err
    assert not (sweep / "report.md").exists(), "nothing is written"

    assert report_main([str(sweep), "--bootstrap", "0", "--allow-mixed-code"]) == 0
    text = (sweep / "report.md").read_text()
    assert "**Mixed code**" in text
    assert f"`{OLD[:12]}`: 2 job(s)" in text
    assert "jobs 0, 1" in text
    assert f"mixed: {NEW[:12]}: 4 job(s); {OLD[:12]}: 2 job(s)" in text
    data = json.loads((sweep / "report.json").read_text())
    assert data["git_commit"] is None
    assert [(c["git_commit"], c["jobs"]) for c in data["code"]] == [
        (NEW, ["2", "3", "4", "5"]),
        (OLD, ["0", "1"]),
    ]


def test_jobs_recorded_without_code_identity_count_as_other_code(make_sweep, capsys) -> None:
    sweep = _sweep(make_sweep, lambda job: None if job == "5" else _identity(NEW))
    assert report_main([str(sweep), "--bootstrap", "0"]) == 2
    assert "recorded without code identity: 1 job(s) (5)" in capsys.readouterr().err


def test_the_report_shows_the_jobs_commit_and_uncommitted_changes(make_sweep, tmp_path, monkeypatch) -> None:
    sweep = _sweep(make_sweep, lambda job: _identity(NEW, "ab" * 32), name="crossing")
    assert report_main([str(sweep), "--bootstrap", "0"]) == 0
    data = json.loads((sweep / "report.json").read_text())
    assert data["git_commit"] == NEW
    assert data["git_dirty"] is True
    assert data["code"][0]["packages"] == PACKAGES
    assert data["code"][0]["label"] == f"{NEW[:12]} with uncommitted changes (diff abababab)"
    text = (sweep / "report.md").read_text()
    assert f"{NEW[:12]} with uncommitted changes" in text
    assert "torch 2.0" in text

    monkeypatch.chdir(tmp_path)
    out = Path("experiments") / "README.md"
    assert suite_main(["--out", str(out), str(sweep)]) == 0
    readme = out.read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| Feature crossing"))
    assert f"{NEW[:12]} with uncommitted changes" in row
    assert "(dirty)" not in readme
    assert str(tmp_path) not in readme, "no absolute path of this machine"
    assert "`crossing`" in readme


def test_sweep_folders_are_named_relative_to_the_repository_root(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    assert display_path(str(root / "multirun" / "reproduce" / "x"), root) == "multirun/reproduce/x"
    # elsewhere on the machine: from its multirun/ folder on, else its own name
    elsewhere = tmp_path / "other" / "multirun" / "reproduce" / "crossing"
    assert display_path(str(elsewhere), root) == "multirun/reproduce/crossing"
    assert display_path(str(tmp_path / "sweeps" / "crossing"), root) == "crossing"
