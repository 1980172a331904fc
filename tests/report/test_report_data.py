"""The report names the data set the jobs read (run.json info), not the experiment's technique string."""

from __future__ import annotations

import json

import pytest
from report_fixtures import CROSSING_REPORT

from ebr.report.cli import main
from ebr.report.sweep import SweepError, load_sweep

MOVIELENS_REPORT = {**CROSSING_REPORT, "technique": "Real data: MovieLens latest-small", "paper": {}}
VALUES = {(arm, seed): {"recall@100": 0.2 + 0.01 * seed} for arm in ("mlp", "masknet") for seed in (0, 1)}


def _title(sweep) -> str:
    return (sweep / "report.md").read_text().splitlines()[0]


def test_title_names_the_data_read_from_run_json(make_sweep) -> None:
    info = {"data_name": "MovieLens ml-25m", "data_source": "/data/ml-25m", "data_rows": 25_000_095}
    sweep = make_sweep(
        VALUES, report=MOVIELENS_REPORT, unfinished=(("masknet", 2),), data_choice="movielens", info=info
    )
    assert main([str(sweep), "--bootstrap", "0", "--allow-incomplete"]) == 0
    report = json.loads((sweep / "report.json").read_text())
    # the unfinished job wrote no run.json: it read nothing, and the config's choice is not used
    assert report["data"] == [
        {
            "name": "MovieLens ml-25m",
            "source": "/data/ml-25m",
            "recorded_in": "run.json",
            "jobs": ["0", "1", "2", "3"],
        }
    ]
    assert _title(sweep) == (
        "# ebr report: INCOMPLETE (0 failed, 2 missing of 6 expected runs): "
        "Real data: MovieLens latest-small (data: MovieLens ml-25m)"
    )
    md = (sweep / "report.md").read_text()
    assert "| data read | MovieLens ml-25m (`/data/ml-25m`) (from run.json) |" in md
    assert not any("different data" in note for note in report["notes"])


def test_jobs_that_read_different_data_are_said(make_sweep) -> None:
    def info(cell: tuple[str, int]) -> dict[str, str]:
        release = "ml-25m" if cell[1] == 0 else "ml-latest-small"
        return {"data_name": f"MovieLens {release}", "data_source": f"/data/{release}"}

    sweep = make_sweep(VALUES, report=MOVIELENS_REPORT, info=info)
    assert main([str(sweep), "--bootstrap", "0"]) == 0
    report = json.loads((sweep / "report.json").read_text())
    assert [(d["name"], d["jobs"]) for d in report["data"]] == [
        ("MovieLens ml-25m", ["0", "2"]),
        ("MovieLens ml-latest-small", ["1", "3"]),
    ]
    note = next(note for note in report["notes"] if "different data sets" in note)
    assert "MovieLens ml-25m (/data/ml-25m) in job(s) 0, 2" in note
    assert "MovieLens ml-latest-small (/data/ml-latest-small) in job(s) 1, 3" in note
    assert "several data sets (MovieLens ml-25m, MovieLens ml-latest-small)" in _title(sweep)


def test_without_run_json_the_config_names_the_data(make_sweep) -> None:
    sweep = make_sweep(
        VALUES,
        report=MOVIELENS_REPORT,
        data_choice="movielens",
        extra_config={"data": {"path": "/data/ml-1m"}},
    )
    assert main([str(sweep), "--bootstrap", "0"]) == 0
    report = json.loads((sweep / "report.json").read_text())
    assert report["data"] == [
        {"name": "movielens", "source": "/data/ml-1m", "recorded_in": "config", "jobs": ["0", "1", "2", "3"]}
    ]
    assert _title(sweep).endswith("(data: movielens)")
    assert any("the jobs' configs name" in note for note in report["notes"])


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ('{"config": {}, "info": {"data_name": 7}}', "0/run.json: info.data_name must be a string"),
        ('{"config": {}, "info": {"data_name": "x", "data_source": 1}}', "info.data_source must be a string"),
        ('{"config": {}, "info": []}', "0/run.json: 'info' must be a mapping"),
        ("{not json", "run.json: not valid JSON"),
    ],
)
def test_malformed_run_json_names_file_and_key(make_sweep, record: str, message: str) -> None:
    sweep = make_sweep({("mlp", 0): {"m": 1.0}})
    (sweep / "0" / "run.json").write_text(record)
    with pytest.raises(SweepError, match=message):
        load_sweep(sweep)
