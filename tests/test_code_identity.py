"""Every number tied to its code: run.json records the code identity (commit, uncommitted diff,
versions), a finished job is reused only by the same code, and no committed page cites a path of
one machine."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from jobs import REPO, train_in_process

from ebr.runs import JobResult, JobSpec, NoLoggers, StaleRunError, read_record, run_in_directory
from ebr.runs import code as code_module
from ebr.runs.code import compute_code_identity, current_code_identity, describe_commit
from tests.test_reliability import NO_TRAINING

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A tiny git repository with one commit (a tracked file and nothing else)."""
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    (root / "tracked.py").write_text("x = 1\n")
    _git(root, "add", "tracked.py")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    return root


@needs_git
def test_the_identity_names_the_commit_and_hashes_the_uncommitted_diff(checkout: Path) -> None:
    clean = compute_code_identity(checkout)
    assert clean["git_commit"] == _git(checkout, "rev-parse", "HEAD").strip()
    assert clean["git_diff_sha256"] is None
    assert clean["git_note"] is None
    assert clean["ebr_version"] == metadata.version("ebr")
    assert clean["packages"]["torch"] == metadata.version("torch")
    assert clean["packages"]["hydra"] == metadata.version("hydra-core")
    assert set(clean["packages"]) == {"torch", "torchrec", "faiss", "lightning", "hydra"}
    assert describe_commit(clean) == clean["git_commit"][:12]
    (checkout / "untracked.py").write_text("y = 2\n")  # untracked files are not part of the diff
    assert compute_code_identity(checkout)["git_diff_sha256"] is None
    pages = checkout / "experiments"
    pages.mkdir()
    (pages / "README.md").write_text("table\n")
    _git(checkout, "add", "experiments")
    _git(checkout, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "page")
    clean = compute_code_identity(checkout)
    # a result page rewritten mid-run (scripts/reproduce.sh writes experiments/README.md) is no code
    (pages / "README.md").write_text("new table\n")
    assert compute_code_identity(checkout)["git_diff_sha256"] is None
    (checkout / "tracked.py").write_text("x = 2\n")
    edited = compute_code_identity(checkout)
    diff = subprocess.run(
        ["git", "-C", str(checkout), "diff", "HEAD", "--", "tracked.py"], capture_output=True, check=True
    ).stdout
    assert edited["git_diff_sha256"] == hashlib.sha256(diff).hexdigest()
    assert edited["git_commit"] == clean["git_commit"]
    assert "uncommitted changes" in describe_commit(edited)


def test_no_checkout_or_no_git_records_none_with_a_note(tmp_path: Path, monkeypatch) -> None:
    outside = compute_code_identity(tmp_path)  # a wheel's site-packages: no .git of its own
    assert outside["git_commit"] is None
    assert outside["git_diff_sha256"] is None
    assert "not in a git checkout" in outside["git_note"]
    (tmp_path / ".git").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))  # git absent
    absent = compute_code_identity(tmp_path)
    assert absent["git_commit"] is None
    assert "failed" in absent["git_note"]


def test_a_missing_package_is_recorded_as_none(monkeypatch) -> None:
    monkeypatch.setitem(code_module.PACKAGES, "faiss", ("no-such-distribution-ebr",))
    assert compute_code_identity(REPO)["packages"]["faiss"] is None


def test_the_runs_package_reads_versions_without_importing_torch() -> None:
    script = "import sys, ebr.runs.code as c; c.current_code_identity(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_job_records_its_code_identity(tmp_path: Path) -> None:
    run_in_directory(JobSpec(tmp_path, {"a": 1}), lambda _: JobResult({"m": 1.0}), NoLoggers)
    assert read_record(tmp_path)["code"] == current_code_identity()


def _edit_record(run_dir: Path, change) -> None:
    path = run_dir / "run.json"
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def test_a_rerun_after_a_code_change_is_refused_naming_both_commits(tmp_path, monkeypatch, capsys) -> None:
    run_dir = tmp_path / "run"
    args = [*NO_TRAINING, f"hydra.run.dir={run_dir}"]
    code, out = train_in_process(monkeypatch, capsys, args)
    assert code == 0, out[-3000:]
    assert train_in_process(monkeypatch, capsys, args)[0] == 0  # same config, same code: skipped
    assert json.loads((run_dir / ".outcome.json").read_text())["status"] == "skipped"
    current = current_code_identity()
    old = "0123456789abcdef0123456789abcdef01234567"
    _edit_record(run_dir, lambda r: r["code"].update(git_commit=old, git_diff_sha256="ab" * 32))
    finished = (run_dir / "metrics.json").stat().st_mtime_ns
    code, out = train_in_process(monkeypatch, capsys, args)
    assert code == 1
    assert f"came from commit {old[:12]} with uncommitted changes" in out
    assert f"this is {describe_commit(current)}" in out
    assert "force=true" in out
    assert (run_dir / "metrics.json").stat().st_mtime_ns == finished, "nothing re-ran"
    assert json.loads((run_dir / ".outcome.json").read_text())["status"] == "refused"
    code, out = train_in_process(monkeypatch, capsys, [*args, "force=true"])
    assert code == 0, out[-3000:]
    assert (run_dir / "metrics.json").stat().st_mtime_ns != finished
    assert read_record(run_dir)["code"] == current


def test_results_recorded_without_code_identity_are_refused(tmp_path: Path) -> None:
    calls: list[int] = []

    def job(_):
        calls.append(1)
        return JobResult({"m": 1.0})

    run_in_directory(JobSpec(tmp_path, {"a": 1}), job, NoLoggers)
    _edit_record(tmp_path, lambda r: r.pop("code"))
    with pytest.raises(StaleRunError, match="recorded without code identity"):
        run_in_directory(JobSpec(tmp_path, {"a": 1}), job, NoLoggers)
    assert run_in_directory(JobSpec(tmp_path, {"a": 1}, multirun=True), job, NoLoggers) == "refused"
    _edit_record(tmp_path, lambda r: r.update(code={**current_code_identity(), "packages": {"torch": "0.1"}}))
    with pytest.raises(StaleRunError, match=r"(?s)torch: 0\.1 -> "):  # a package version differs
        run_in_directory(JobSpec(tmp_path, {"a": 1}), job, NoLoggers)
    assert calls == [1]
    assert run_in_directory(JobSpec(tmp_path, {"a": 1}, force=True), job, NoLoggers) == "finished"
    assert calls == [1, 1]


# absolute paths of one machine: /work/..., /home/..., /tmp/..., /Users/..., C:\...
MACHINE_PATH = re.compile(r"(?<![\w.~$}-])(/(?:work|home|tmp|Users|root|mnt|private)/|[A-Za-z]:\\\\?)")


def test_no_committed_page_cites_an_absolute_path_of_a_machine() -> None:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "experiments", "docs"], capture_output=True, check=True
    ).stdout.decode()
    hits = []
    for name in filter(None, listed.split("\0")):
        path = REPO / name
        if not path.is_file() or b"\0" in path.read_bytes()[:1024]:
            continue  # a binary (a figure)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if MACHINE_PATH.search(line):
                hits.append(f"{name}:{number}: {line.strip()[:160]}")
    assert not hits, "absolute paths of a machine in committed files:\n" + "\n".join(hits)
