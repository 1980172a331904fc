"""ebr-report end to end on fabricated sweeps: files, numbers, failed/missing runs, exit codes, wandb."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from report_fixtures import CROSSING_REPORT
from scipy.stats import t as student_t

from ebr.report.cli import EXIT_INCOMPLETE, main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# mlp seed 2 has no directory; masknet seed 1 lacks sim/repins; dhen seed 1 failed, seed 2 unfinished
VALUES = {
    ("mlp", 0): {"recall@100": 0.20, "sim/repins": 100.0, "train/seconds": 5.0},
    ("mlp", 1): {"recall@100": 0.22, "sim/repins": 110.0, "train/seconds": 6.0},
    ("masknet", 0): {"recall@100": 0.21, "sim/repins": 103.0, "train/seconds": 7.0},
    ("masknet", 1): {"recall@100": 0.2255, "train/seconds": 7.0},
    ("masknet", 2): {"recall@100": 0.30, "sim/repins": 130.0, "train/seconds": 7.0},
    ("dhen", 0): {"recall@100": 0.24, "sim/repins": 90.0, "train/seconds": 9.0},
}


def _no_nan(name: str) -> float:
    raise AssertionError(f"report.json holds {name}")


def load_json(path: Path) -> dict:
    return json.loads(path.read_text(), parse_constant=_no_nan)


def test_report_files_numbers_and_problems(make_sweep, capsys) -> None:
    sweep = make_sweep(VALUES, report=CROSSING_REPORT, failed=(("dhen", 1),), unfinished=(("dhen", 2),))
    # a failed and two missing runs: the report is written, says so first, and the exit code is 4
    assert main([str(sweep), "--bootstrap", "500"]) == EXIT_INCOMPLETE
    assert "is incomplete: 1 failed, 2 missing of 9 expected runs" in capsys.readouterr().err
    first = (sweep / "report.md").read_text().splitlines()[0]
    assert first.startswith("# ebr report: INCOMPLETE (1 failed, 2 missing of 9 expected runs): ")
    assert main([str(sweep), "--bootstrap", "500", "--allow-incomplete"]) == 0

    report = load_json(sweep / "report.json")
    assert (sweep / "deltas.png").read_bytes()[:8] == PNG_SIGNATURE
    assert report["baseline"] == "model/crossing=mlp"
    assert report["headline_metrics"] == ["recall@100", "sim/repins"]
    assert report["metrics"] == ["recall@100", "sim/repins", "train/seconds"]
    assert (report["n_runs"], report["n_finished"], report["expected_runs"]) == (8, 6, 9)

    assert report["n_failed"] == 1
    assert [(p["name"], p["seed"]) for p in report["failed"]] == [("6", "1")]
    missing = {(p["arm"], p["seed"]) for p in report["missing"]}
    assert missing == {("model/crossing=mlp", "2"), ("model/crossing=dhen", "2")}
    assert report["n_missing"] == 2

    masknet = report["results"]["recall@100"]["model/crossing=masknet"]
    deltas = [(0.21 - 0.20) / 0.20, (0.2255 - 0.22) / 0.22]
    mean = sum(deltas) / 2
    # n = 2: sd = |d0 - d1| / sqrt(2), so t * sd / sqrt(2) = t * |d0 - d1| / 2
    half = student_t.ppf(0.975, 1) * abs(deltas[0] - deltas[1]) / 2
    assert masknet["delta"]["rel_mean"] == pytest.approx(mean)
    assert masknet["delta"]["t_ci"] == pytest.approx([mean - half, mean + half])
    assert masknet["delta"]["n_pairs"] == 2
    assert "2" in masknet["delta"]["excluded"]
    assert masknet["mean"] == pytest.approx((0.21 + 0.2255 + 0.30) / 3)
    assert masknet["paper"] == CROSSING_REPORT["paper"]["masknet"]

    # fewer than 2 pairs: a delta but no interval or p-value
    for metric, arm in [("recall@100", "model/crossing=dhen"), ("sim/repins", "model/crossing=masknet")]:
        row = report["results"][metric][arm]
        assert row["delta"]["n_pairs"] == 1
        assert row["delta"]["t_ci"] is None
        assert row["delta"]["bootstrap_ci"] is None
        assert row["delta"]["p_value"] is None
    assert report["results"]["sim/repins"]["model/crossing=masknet"]["missing_in"] == ["3"]

    md = (sweep / "report.md").read_text()
    assert str(sweep.resolve()) in md
    assert "ebr version" in md
    assert "1 failed, 2 missing" in md
    assert "`6`" in md  # the failed job, by name
    assert "ValueError: diverged" in md
    assert "model/crossing=mlp seed=2" in md
    assert "### recall@100" in md
    assert "## All metrics" in md
    assert f"{100 * mean:+.2f}%" in md
    assert "paired t interval" in md
    assert "sim/repins is missing in job(s) 3" in md
    assert "wrote" in capsys.readouterr().out
    assert not list(sweep.glob(".*.tmp-*"))  # temporaries renamed away


def test_no_baseline_means_only_and_said(make_sweep) -> None:
    values = {
        ("mlp", 0): {"m": 1.0},
        ("mlp", 1): {"m": 3.0},
        ("dhen", 0): {"m": 2.0},
        ("dhen", 1): {"m": 6.0},
    }
    sweep = make_sweep(values, report=None)
    assert main([str(sweep), "--bootstrap", "0"]) == 0
    report = load_json(sweep / "report.json")
    assert report["baseline"] is None
    assert all(row["delta"] is None for row in report["results"]["m"].values())
    assert report["results"]["m"]["model/crossing=dhen"]["mean"] == pytest.approx(4.0)
    assert any("per-arm means only" in note for note in report["notes"])
    assert "per-arm means only" in (sweep / "report.md").read_text()
    # no baseline, no deltas: the figure of per-arm means is not called deltas
    assert (sweep / "means.png").read_bytes()[:8] == PNG_SIGNATURE
    assert not (sweep / "deltas.png").exists()

    # the same sweep with an explicit baseline gets deltas: dhen is (2-1)/1 = 1.0 and (6-3)/3 = 1.0
    assert main([str(sweep), "--baseline", "model/crossing=mlp", "--bootstrap", "0"]) == 0
    report = load_json(sweep / "report.json")
    assert report["baseline_source"] == "--baseline"
    assert report["results"]["m"]["model/crossing=dhen"]["delta"]["rel_mean"] == pytest.approx(1.0)
    assert (sweep / "deltas.png").is_file()
    assert not (sweep / "means.png").exists()


def test_single_seed_sweep_reports_means_with_null_intervals(make_sweep) -> None:
    sweep = make_sweep(
        {("mlp", 0): {"recall@100": 0.2}, ("dhen", 0): {"recall@100": 0.25}}, report=CROSSING_REPORT
    )
    assert main([str(sweep)]) == 0
    report = load_json(sweep / "report.json")
    row = report["results"]["recall@100"]["model/crossing=dhen"]
    assert row["delta"]["rel_mean"] == pytest.approx(0.25)
    assert row["delta"]["t_ci"] is None
    assert row["std"] is None
    # a headline metric no run reports is listed, not invented
    assert report["results"]["sim/repins"]["model/crossing=dhen"]["n"] == 0
    assert "No finished run reports sim/repins." in report["notes"]


def test_bad_input_exits_2(tmp_path, make_sweep, capsys) -> None:
    assert main([str(tmp_path / "absent")]) == 2
    assert "not a directory" in capsys.readouterr().err
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("x")
    assert main([str(tmp_path / "plain")]) == 2
    assert "not a sweep directory" in capsys.readouterr().err

    sweep = make_sweep({("mlp", 0): {"m": 1.0}, ("dhen", 0): {"m": 1.0}})
    assert main([str(sweep), "--baseline", "model/crossing=masknet"]) == 2
    assert "names no arm" in capsys.readouterr().err
    assert main([str(sweep), "--metrics", "m,recall@7"]) == 2
    assert "recall@7" in capsys.readouterr().err
    assert not (sweep / "report.json").exists()


def test_console_script_exit_code(tmp_path) -> None:
    script = Path(sys.executable).with_name("ebr-report")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "ebr.report.cli"]
    done = subprocess.run([*command, str(tmp_path)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "not a sweep directory" in done.stderr


def test_report_imports_no_model_training_or_data_code() -> None:
    code = (
        "import sys, ebr.report.cli, ebr.report.suite, ebr.report.wandb_summary\n"
        "bad = [m for m in sys.modules if m.split('.')[:2] in (['ebr','models'], ['ebr','training'], "
        "['ebr','data'])]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


def test_wandb_offline_summary_run(make_sweep, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    values = {("mlp", s): {"recall@100": 0.2 + 0.01 * s} for s in range(2)}
    values |= {("dhen", s): {"recall@100": 0.22 + 0.01 * s} for s in range(2)}
    sweep = make_sweep(values, report=CROSSING_REPORT)
    assert main([str(sweep), "--wandb", "--bootstrap", "100"]) == 0
    runs = list((sweep / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("*.wandb"))  # the offline run's event log
    tables = list(runs[0].glob("files/media/table/report/table_*.table.json"))
    assert len(tables) == 1
    table = json.loads(tables[0].read_text())
    column = table["columns"].index("rel_delta")
    rows = {(row[0], row[1]): row for row in table["data"]}
    assert len(rows) == 4  # 2 headline metrics (sim/repins reported by no run) x 2 arms
    hand = ((0.22 - 0.20) / 0.20 + (0.23 - 0.21) / 0.21) / 2
    assert rows[("recall@100", "model/crossing=dhen")][column] == pytest.approx(hand)
    assert list(runs[0].glob("files/media/images/report/deltas_*.png"))


def test_no_finished_run_exits_3_with_the_failures_written(make_sweep, capsys) -> None:
    sweep = make_sweep({}, report=CROSSING_REPORT, failed=(("mlp", 0), ("dhen", 0)), unfinished=(("mlp", 1),))
    assert main([str(sweep), "--wandb"]) == 3
    err = capsys.readouterr().err
    assert "no run" in err
    assert "finished" in err
    assert "2 failed, 2 missing" in err
    report = load_json(sweep / "report.json")
    assert (report["n_finished"], report["n_failed"], report["n_missing"]) == (0, 2, 2)
    assert "ValueError: diverged" in (sweep / "report.md").read_text()
    assert not (sweep / "wandb").exists()  # nothing to log
    # with --allow-incomplete, one finished run is enough for exit 0
    sweep = make_sweep({("mlp", 0): {"m": 1.0}}, report=CROSSING_REPORT, failed=(("dhen", 0),))
    assert main([str(sweep), "--bootstrap", "0", "--allow-incomplete"]) == 0
    assert main([str(sweep), "--bootstrap", "0"]) == EXIT_INCOMPLETE


def test_a_metric_that_is_zero_everywhere_gets_one_note(make_sweep) -> None:
    values = {(arm, s): {"m": 1.0 + s, "flag": 0.0} for arm in ("mlp", "dhen") for s in range(3)}
    sweep = make_sweep(values, report=CROSSING_REPORT)
    assert main([str(sweep), "--bootstrap", "0"]) == 0
    notes = json.loads((sweep / "report.json").read_text())["notes"]
    assert [note for note in notes if "flag" in note] == ["flag is 0 in every run: no relative deltas."]


def test_few_pairs_omit_the_bootstrap_and_a_clipped_bound_is_marked(make_sweep) -> None:
    # 2 seed pairs: a bootstrap interval would be [min, max] of two numbers; recall falling to 0 on
    # one seed: the t interval's lower bound would be far below -100%
    sweep = make_sweep(
        {
            ("mlp", 0): {"recall@100": 0.2},
            ("mlp", 1): {"recall@100": 0.2},
            ("dhen", 0): {"recall@100": 0.0},
            ("dhen", 1): {"recall@100": 0.19},
        },
        report=CROSSING_REPORT,
    )
    assert main([str(sweep)]) == 0
    row = load_json(sweep / "report.json")["results"]["recall@100"]["model/crossing=dhen"]
    assert row["delta"]["bootstrap_ci"] is None
    assert row["delta"]["clipped"] is True
    assert row["delta"]["t_ci"][0] == -1.0
    text = (sweep / "report.md").read_text()
    assert "n/a (n < 5)" in text
    assert "[-100.00%*," in text
    assert "clipped at -100%" in text
    assert "shown only from 5 seed pairs" in text
