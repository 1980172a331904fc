"""experiments/README.md from an ablation report and its control report: one row per paper claim."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from report_fixtures import CROSSING_REPORT
from world_fixtures import WORLD_REPORT, factor_values, world_sweep

from ebr.report.cli import main as report_main
from ebr.report.render import fmt_ci, fmt_pct
from ebr.report.suite import SuiteError, load_report, main, pair_reports, write_readme

ABLATION = {0: [1.02, 1.03, 1.025], 1: [1.01, 1.02, 1.015], 2: [1.03, 1.02, 1.04]}
CONTROL = {0: [1.001, 0.998, 1.0], 1: [0.999, 1.002, 1.0], 2: [1.0, 1.001, 0.999]}


def _report(root: Path, name: str, factors: dict[int, list[float]], control: bool) -> Path:
    sweep = world_sweep(root, name, factor_values(factors), report={**WORLD_REPORT, "control": control})
    assert report_main([str(sweep), "--bootstrap", "500"]) == 0
    return sweep


def test_readme_row_per_claim(tmp_path, monkeypatch) -> None:
    ablation = _report(tmp_path, "crossing", ABLATION, False)
    control = _report(tmp_path, "crossing_control", CONTROL, True)
    monkeypatch.chdir(tmp_path)
    out = Path("experiments") / "README.md"
    out.parent.mkdir()
    assert main(["--out", str(out), str(control), str(ablation)]) == 0
    text = out.read_text()

    rows = [line for line in text.splitlines() if line.startswith("| Feature crossing")]
    assert len(rows) == 1  # one claim, one row
    cells = [c.strip() for c in rows[0].strip("|").split(" | ")]
    technique, claim, paper, measured, worlds, control_cell, verdict, commit, page = cells
    assert technique == CROSSING_REPORT["technique"]
    assert claim == "masknet vs mlp"
    assert paper == "sim/repins: repins +1%"
    pooled = json.loads((ablation / "report.json").read_text())["claims"][0]["delta"]["pooled"]
    assert measured == f"{fmt_pct(pooled['mean'])} {fmt_ci(tuple(pooled['ci']))}"
    assert worlds == "3 of 3 (sign: 3 of 3)"
    control_pooled = json.loads((control / "report.json").read_text())["claims"][0]["delta"]["pooled"]
    assert control_cell == f"{fmt_pct(control_pooled['mean'])} {fmt_ci(tuple(control_pooled['ci']))}"
    assert verdict == "reproduced; control holds"
    assert commit
    assert page == "[crossing](crossing.md)"
    # at most one line per cell, and the sweeps are named relative to the working directory
    assert "<br>" not in text
    assert "`crossing` (data:" in text
    assert "worlds 0, 1, 2" in text


def test_lone_ablation_and_bad_inputs(tmp_path, capsys) -> None:
    ablation = _report(tmp_path, "crossing", {0: [1.0, 1.01, 0.99], 1: [1.0, 0.98, 1.02]}, False)
    out = tmp_path / "README.md"
    write_readme(out, [ablation / "report.json"])
    text = out.read_text()
    assert "| no sweep |" in text  # the control column says the control is absent
    assert "not reproduced; no control" in text

    report = load_report(ablation)
    with pytest.raises(SuiteError, match="two ablation reports"):
        pair_reports([report, report])

    assert main(["--out", str(out), str(tmp_path / "nowhere")]) == 2
    assert "no report.json" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"schema": "other"}')
    assert main(["--out", str(out), str(tmp_path / "bad.json")]) == 2
    assert "not an ebr report" in capsys.readouterr().err


def test_technique_without_claims(make_sweep, tmp_path) -> None:
    values = {
        (arm, s): {"recall@100": 0.2 + s / 100, "sim/repins": 100.0}
        for arm in ("mlp", "masknet")
        for s in range(3)
    }
    sweep = make_sweep(values, report=CROSSING_REPORT, name="plain")
    assert report_main([str(sweep), "--bootstrap", "0"]) == 0
    out = tmp_path / "README.md"
    write_readme(out, [sweep])
    assert "no claim declared (report.claims)" in out.read_text()
