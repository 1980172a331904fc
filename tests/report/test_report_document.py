"""The typed report: to_json / read_report round trip, checked reading, and writers reading the object."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from report_fixtures import CROSSING_REPORT

from ebr.report.cli import build_parser, make_report
from ebr.report.document import SCHEMA, Report, ReportFormatError
from ebr.report.json_reader import load_report, read_report
from ebr.report.plots import deltas_png
from ebr.report.render import render_markdown, write_report
from ebr.report.suite import main as suite_main
from ebr.report.wandb_summary import TABLE_COLUMNS, table_rows

# masknet seed 1 lacks sim/repins; dhen seed 1 failed, seed 2 unfinished; mlp seed 2 has no directory
VALUES = {
    ("mlp", 0): {"recall@100": 0.20, "sim/repins": 100.0},
    ("mlp", 1): {"recall@100": 0.22, "sim/repins": 110.0},
    ("masknet", 0): {"recall@100": 0.21, "sim/repins": 103.0},
    ("masknet", 1): {"recall@100": 0.2255},
    ("masknet", 2): {"recall@100": 0.30, "sim/repins": 130.0},
    ("dhen", 0): {"recall@100": 0.24, "sim/repins": 90.0},
}
MASKNET = "model/crossing=masknet"


def _report(sweep: Path, *argv: str) -> Report:
    return make_report(build_parser().parse_args([str(sweep), "--bootstrap", "300", *argv]))[1]


@pytest.fixture
def gappy(make_sweep) -> Path:
    return make_sweep(VALUES, report=CROSSING_REPORT, failed=(("dhen", 1),), unfinished=(("dhen", 2),))


def test_round_trip_through_json_text_and_file(gappy, make_sweep) -> None:
    no_baseline = make_sweep({("mlp", 0): {"m": 1.0}, ("dhen", 0): {"m": 2.0}}, report=None)
    for report in (_report(gappy), _report(no_baseline)):
        again = read_report(json.loads(report.dumps()))
        assert again == report
        assert again.to_json() == report.to_json()
    report = _report(gappy)
    write_report(report, gappy)
    assert load_report(gappy) == report
    assert load_report(gappy / "report.json") == report
    # the object holds what was computed: None intervals below 2 pairs, tuples otherwise
    row = report.results["recall@100"][MASKNET]
    assert row.delta is not None
    assert row.delta.n_pairs == 2
    assert isinstance(row.delta.t_ci, tuple)
    assert report.results["sim/repins"][MASKNET].delta.t_ci is None
    assert report.results["sim/repins"][MASKNET].missing_in == ("3",)
    assert (report.n_failed, report.n_missing) == (1, 2)


def test_old_or_foreign_schema_names_the_file(gappy, tmp_path, capsys) -> None:
    document = _report(gappy).to_json()
    old = tmp_path / "old" / "report.json"
    old.parent.mkdir()
    old.write_text(json.dumps({**document, "schema": "ebr-report/1"}))
    with pytest.raises(ReportFormatError, match="another version of ebr-report") as info:
        load_report(old.parent)
    assert str(old) in str(info.value)
    assert "ebr-report/1" in str(info.value)

    assert suite_main(["--out", str(tmp_path / "README.md"), str(old.parent)]) == 2
    err = capsys.readouterr().err
    assert str(old) in err
    assert SCHEMA in err
    with pytest.raises(ReportFormatError, match="not an ebr report"):
        read_report([1, 2], "x.json")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("seeds"), r"x\.json: seeds: missing"),
        (lambda d: d.update(n_runs="8"), r"x\.json: n_runs: expected an integer, got '8'"),
        (lambda d: d.update(n_failed=0), r"n_failed: 0 but 1 listed"),
        (lambda d: d.update(baseline="model/crossing=other"), r"baseline: 'model/crossing=other' is not"),
        (lambda d: d["arm_short_labels"].popitem(), r"arm_short_labels: its arms"),
        (
            lambda d: d["results"]["recall@100"][MASKNET]["delta"].pop("t_ci"),
            r"results\['recall@100'\]\['model/crossing=masknet'\]\.delta\.t_ci: missing",
        ),
        (
            lambda d: d["results"]["recall@100"][MASKNET]["delta"].update(t_ci=[0.1]),
            r"\.delta\.t_ci: expected \[low, high\] or null, got \[0\.1\]",
        ),
        (lambda d: d["results"]["recall@100"][MASKNET].update(mean=True), r"\.mean: expected a number"),
        (lambda d: d["failed"][0].pop("reason"), r"failed\[0\]\.reason: missing"),
        (lambda d: d["data"].append({"name": 3}), r"data\[1\]\.name: expected a string"),
        (lambda d: d["results"]["recall@100"].update(ghost={}), r"arm\(s\) \['ghost'\] are not among"),
    ],
)
def test_malformed_document_names_the_key(gappy, edit, message) -> None:
    report = _report(gappy, "--baseline", "model/crossing=mlp")
    document = report.to_json()
    document["data"] = [{"name": "d", "source": None, "recorded_in": "config", "jobs": ["0"]}]
    assert read_report(json.loads(json.dumps(document)), "x.json").data[0].name == "d"
    edit(document)
    with pytest.raises(ReportFormatError, match=message):
        read_report(document, "x.json")


def test_writers_read_the_object_not_the_sweep(gappy) -> None:
    report = _report(gappy)
    row = report.results["recall@100"][MASKNET]
    # a delta no sweep produced: each writer must show exactly it
    planted = dataclasses.replace(row.delta, rel_mean=0.123456, t_ci=(0.01, 0.2), p_value=0.0321)
    results = {
        **report.results,
        "recall@100": {**report.results["recall@100"], MASKNET: dataclasses.replace(row, delta=planted)},
    }
    edited = dataclasses.replace(report, results=results)

    md = render_markdown(edited)
    assert "| masknet" not in md  # tables name arms by their short label, the full key=value pair
    line = next(x for x in md.splitlines() if x.startswith(f"| {MASKNET} | 3 |"))
    assert "+12.35%" in line
    assert "[+1.00%, +20.00%]" in line
    assert "| 0.032 |" in line
    assert "+12.35%" not in render_markdown(report)

    column = {name: i for i, name in enumerate(TABLE_COLUMNS)}
    wandb_row = next(r for r in table_rows(edited) if r[0] == "recall@100" and r[1] == MASKNET)
    assert wandb_row[column["rel_delta"]] == 0.123456
    assert (wandb_row[column["t_ci_low"]], wandb_row[column["t_ci_high"]]) == (0.01, 0.2)
    assert wandb_row[column["arm_short"]] == MASKNET

    png = deltas_png(edited)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert png != deltas_png(report)

    # a report read back from report.json renders exactly like the object it came from
    assert render_markdown(read_report(edited.to_json())) == md
