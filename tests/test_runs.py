"""The job wrapper every entry point shares: skip, refuse, record, rank-0 guard, sweep tally, arms."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from ebr.runs import (
    ERROR_FILE,
    METRICS_FILE,
    OUTCOME_FILE,
    RECORD_FILE,
    JobResult,
    JobSpec,
    NoLoggers,
    StaleRunError,
    arm_from_overrides,
    config_differences,
    config_hash,
    read_arm,
    read_record,
    result_config,
    run_in_directory,
    tally_sweep,
    write_bytes_atomic,
)


class RecordingLoggers(NoLoggers):
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def log_config(self, config):
        self.events.append(("config", config))

    def log_final(self, metrics):
        self.events.append(("final", dict(metrics)))

    def finish(self, success):
        self.events.append(("finish", success))


def _job_dir(tmp_path: Path, name: str = "job", config_text: str = "lr: 1\n") -> Path:
    run_dir = tmp_path / name
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(config_text)
    (run_dir / ".hydra" / "overrides.yaml").write_text("- seed=0\n- model=x\n")
    return run_dir


def _counting_job(calls: list[int], metrics: dict[str, float] | None = None):
    def job(loggers):
        calls.append(1)
        return JobResult(metrics or {"recall@100": 0.5}, info={"data_source": "synthetic:abc"})

    return job


def test_a_job_writes_record_then_metrics_and_logs_through_its_loggers(tmp_path: Path) -> None:
    run_dir = _job_dir(tmp_path)
    loggers = RecordingLoggers()
    calls: list[int] = []
    config = {"lr": 1, "logger": {"project": "ebr"}}
    outcome = run_in_directory(JobSpec(run_dir, config), _counting_job(calls), lambda: loggers)
    assert outcome == "finished"
    assert calls == [1]
    assert json.loads((run_dir / METRICS_FILE).read_text()) == {"recall@100": 0.5}
    record = read_record(run_dir)
    assert record["config"] == {"lr": 1}  # the logger cannot change results: not part of the identity
    assert record["config_hash"] == config_hash({"lr": 1})
    assert record["info"] == {"data_source": "synthetic:abc"}
    assert record["arm"] == "model=x"
    assert [event for event, _ in loggers.events] == ["config", "final", "finish"]
    assert loggers.events[-1] == ("finish", True)
    assert json.loads((run_dir / OUTCOME_FILE).read_text())["status"] == "finished"


def test_same_config_is_skipped_and_a_changed_one_refused_with_the_old_config_kept(tmp_path: Path) -> None:
    run_dir = _job_dir(tmp_path)
    calls: list[int] = []
    run_in_directory(JobSpec(run_dir, {"train": {"dense_lr": 0.001}}), _counting_job(calls), NoLoggers)
    finished = (run_dir / METRICS_FILE).stat().st_mtime_ns
    assert run_in_directory(
        JobSpec(run_dir, {"train": {"dense_lr": 0.001}}), _counting_job(calls), NoLoggers
    ) == ("skipped")
    assert calls == [1]
    # Hydra rewrites .hydra/config.yaml for the new invocation before the job runs
    (run_dir / ".hydra" / "config.yaml").write_text("lr: 2\n")
    changed = JobSpec(run_dir, {"train": {"dense_lr": 0.5}})
    with pytest.raises(
        StaleRunError, match=r"(?s)differs in 1 key.*train\.dense_lr: 0\.001 -> 0\.5.*force=true"
    ):
        run_in_directory(changed, _counting_job(calls), NoLoggers)
    assert calls == [1]
    assert (run_dir / ".hydra" / "config.yaml").read_text() == "lr: 1\n", "the old results keep their config"
    assert (run_dir / METRICS_FILE).stat().st_mtime_ns == finished
    in_sweep = JobSpec(run_dir, {"train": {"dense_lr": 0.5}}, multirun=True)
    assert run_in_directory(in_sweep, _counting_job(calls), NoLoggers) == "refused"
    forced = JobSpec(run_dir, {"train": {"dense_lr": 0.5}}, force=True)
    assert run_in_directory(forced, _counting_job(calls), NoLoggers) == "finished"
    assert calls == [1, 1]
    assert read_record(run_dir)["config"] == {"train.dense_lr": 0.5}


def test_metrics_without_a_record_are_not_trusted(tmp_path: Path) -> None:
    run_dir = _job_dir(tmp_path)
    (run_dir / METRICS_FILE).write_text("{}")
    with pytest.raises(StaleRunError, match=r"without run\.json"):
        run_in_directory(JobSpec(run_dir, {"a": 1}), _counting_job([]), NoLoggers)


def test_a_failure_writes_error_txt_and_no_metrics(tmp_path: Path) -> None:
    run_dir = _job_dir(tmp_path)
    loggers = RecordingLoggers()

    def failing(_):
        raise ValueError("train.loss.temperature must be positive")

    with pytest.raises(ValueError, match="temperature"):
        run_in_directory(JobSpec(run_dir, {"a": 1}), failing, lambda: loggers)
    assert "temperature must be positive" in (run_dir / ERROR_FILE).read_text()
    assert not (run_dir / METRICS_FILE).exists()
    assert not (run_dir / RECORD_FILE).exists()
    assert loggers.events[-1] == ("finish", False)
    assert run_in_directory(JobSpec(run_dir, {"a": 1}, multirun=True), failing, NoLoggers) == "failed"
    # a later success removes the failure record
    run_in_directory(JobSpec(run_dir, {"a": 1}), _counting_job([]), NoLoggers)
    assert not (run_dir / ERROR_FILE).exists()


def test_non_finite_metrics_are_refused(tmp_path: Path) -> None:
    run_dir = _job_dir(tmp_path)
    with pytest.raises(ValueError, match=r"non-finite metric values.*'m'"):
        run_in_directory(JobSpec(run_dir, {"a": 1}), _counting_job([], {"m": float("nan")}), NoLoggers)
    assert not (run_dir / METRICS_FILE).exists()


def test_only_rank_zero_writes_and_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    run_dir = _job_dir(tmp_path)
    calls: list[int] = []

    def never(*_):
        raise AssertionError("rank 1 must not build loggers")

    assert run_in_directory(JobSpec(run_dir, {"a": 1}), _counting_job(calls), never) == "finished"
    assert calls == [1], "every rank runs the job (training is collective)"
    assert sorted(p.name for p in run_dir.iterdir()) == [".hydra"]


def test_result_config_drops_keys_that_cannot_change_results() -> None:
    config = {
        "seed": 1,
        "logger": {"project": "p"},
        "trainer": {"max_epochs": 3, "enable_progress_bar": True},
    }
    assert result_config(config) == {"seed": 1, "trainer.max_epochs": 3}
    assert config_differences({"a": 1, "b": 2}, {"a": 1, "c": 3}) == [
        "b: 2 -> '<absent>'",
        "c: '<absent>' -> 3",
    ]


def test_sweep_tally_counts_this_invocations_jobs(tmp_path: Path) -> None:
    since = time.time()
    for name, status in (("0", "finished"), ("1", "failed"), ("2", "skipped")):
        job = _job_dir(tmp_path, name)
        (job / OUTCOME_FILE).write_text(json.dumps({"status": status, "ended": time.time(), "message": "m"}))
    _job_dir(tmp_path, "3")  # started, then killed: no outcome
    tally = tally_sweep(tmp_path, since)
    assert tally.counts == {"finished": 1, "failed": 1, "skipped": 1, "no outcome": 1}
    assert not tally.ok
    assert "1 finished, 1 skipped, 1 failed" in tally.summary()
    assert tally_sweep(tmp_path, since + 3600).counts == {}, "older jobs are not this sweep's"


def test_arm_is_override_dirname_less_the_excluded_keys(tmp_path: Path) -> None:
    overrides = ["seed=1", "data=synthetic_tiny", "model/crossing=masknet", "+x.y=2", "experiment=crossing"]
    arm = arm_from_overrides(overrides, ["seed", "experiment"])
    assert arm.label == "+x.y=2,data=synthetic_tiny,model/crossing=masknet"  # as Hydra writes it
    assert arm.values == {"data": "synthetic_tiny", "model/crossing": "masknet", "x.y": "2"}
    assert arm_from_overrides(["seed=0"], ["seed"]).label == "single"
    job = tmp_path / "job"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["seed=0", "data=synthetic_tiny"]))
    assert read_arm(job).label == "data=synthetic_tiny"  # without hydra.yaml only the seed is excluded
    hydra = {"hydra": {"job": {"config": {"override_dirname": {"exclude_keys": ["seed", "data"]}}}}}
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    assert read_arm(job).label == "single"


def test_atomic_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    write_bytes_atomic(target, b"abc")
    assert target.read_bytes() == b"abc"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_a_failed_atomic_write_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    from ebr.runs import write_atomic

    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def half(tmp: Path) -> None:
        tmp.write_bytes(b"ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, half, durable=True)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_a_torch_file_is_the_same_bytes_from_any_process(tmp_path: Path, monkeypatch) -> None:
    # torch.save names its archive after the file it writes: the temporary is `<name>.tmp` whatever
    # the process, so model.pt's bytes do not depend on who wrote it
    import os

    import torch

    from ebr.runs import write_atomic

    written = []
    for pid in (11, 12):
        monkeypatch.setattr(os, "getpid", lambda pid=pid: pid)
        (tmp_path / f"{pid}").mkdir()
        path = write_atomic(
            tmp_path / f"{pid}" / "model.pt", lambda tmp: torch.save({"w": torch.ones(2)}, tmp)
        )
        written.append(path.read_bytes())
    assert written[0] == written[1]


def test_a_published_directory_replaces_an_old_one_unless_it_is_kept(tmp_path: Path) -> None:
    from ebr.runs import publish_directory, remove_directory

    final = tmp_path / "entry"

    def fill(text: str):
        return lambda folder: (folder / "f.txt").write_text(text)

    assert publish_directory(final, fill("one")) is None
    assert publish_directory(final, fill("two")) is None  # replaced whole
    assert (final / "f.txt").read_text() == "two"
    kept = publish_directory(final, fill("three"), keep=lambda found: (found / "f.txt").read_text())
    assert kept == "two"  # another job's valid copy wins; ours is dropped
    assert (final / "f.txt").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry"]  # no temporary or trash left
    assert remove_directory(final)
    assert not remove_directory(final)
    assert list(tmp_path.iterdir()) == []
