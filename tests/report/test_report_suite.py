"""experiments/README.md from an ablation report and its control report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from report_fixtures import CROSSING_REPORT
from scipy.stats import t as student_t

from ebr.report.cli import main as report_main
from ebr.report.suite import SuiteError, load_report, main, pair_reports, write_readme

BASE = [0.20, 0.22, 0.25]


def _sweep(make_sweep, name: str, control: bool, factors: dict[str, list[float]], failed=()) -> Path:
    values = {("mlp", s): {"recall@100": v, "sim/repins": 100.0 + s} for s, v in enumerate(BASE)}
    for arm, per_seed in factors.items():
        values |= {
            (arm, s): {"recall@100": BASE[s] * f, "sim/repins": 100.0 + s} for s, f in enumerate(per_seed)
        }
    report = {**CROSSING_REPORT, "control": control}
    sweep = make_sweep(values, report=report, name=name, failed=failed)
    # a control sweep with a failed job on purpose
    assert report_main([str(sweep), "--bootstrap", "200", "--allow-incomplete"]) == 0
    return sweep


def _hand(factors: list[float]) -> tuple[float, float, float]:
    deltas = [f - 1.0 for f in factors]  # (base * f - base) / base
    n = len(deltas)
    mean = sum(deltas) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in deltas) / (n - 1))
    half = student_t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def test_readme_pairs_ablation_with_control(make_sweep, tmp_path, monkeypatch) -> None:
    ablation_factors = {"masknet": [1.05, 1.025, 1.04], "dhen": [1.08, 1.06, 1.07]}
    control_factors = {"masknet": [1.001, 0.998, 1.0], "dhen": [0.999, 1.002, 1.0]}
    ablation = _sweep(make_sweep, "crossing", False, ablation_factors)
    control = _sweep(make_sweep, "crossing_control", True, control_factors, failed=(("dhen", 3),))

    monkeypatch.chdir(tmp_path)
    out = Path("experiments") / "README.md"
    out.parent.mkdir()
    verdict = "MaskNet beats the MLP, | but the control keeps the gain."
    Path(CROSSING_REPORT["page"]).write_text(
        f"# Crossing\n\n**Verdict, Other technique:** not this one.\n\n"
        f"**Verdict, {CROSSING_REPORT['technique']}:** MaskNet beats the MLP, |\nbut the control keeps "
        "the gain.\n\nLater paragraph.\n"
    )
    assert main(["--out", str(out), str(control), str(ablation)]) == 0
    text = out.read_text()

    rows = [line for line in text.splitlines() if line.startswith("| Feature crossing")]
    assert len(rows) == 1  # one row per technique
    cells = [c.strip() for c in rows[0].strip("|").split(" | ")]
    technique, paper, measured, control_cell, verdict_cell, seeds, date, commit, page = cells
    # the page's paragraph for this technique, its pipe escaped for the table
    assert verdict_cell == verdict.replace("|", "\\|")
    assert technique == CROSSING_REPORT["technique"]
    assert CROSSING_REPORT["paper"]["masknet"] in paper
    for arm, factors in ablation_factors.items():
        mean, low, high = _hand(factors)
        assert (
            f"**{arm}** recall@100: {100 * mean:+.2f}% [{100 * low:+.2f}%, {100 * high:+.2f}%] (n=3)"
            in measured
        )
    for arm, factors in control_factors.items():
        mean, low, high = _hand(factors)
        assert (
            f"**{arm}** recall@100: {100 * mean:+.2f}% [{100 * low:+.2f}%, {100 * high:+.2f}%]"
            in control_cell
        )
    assert "**masknet** sim/repins: +0.00%" in measured
    assert "ablation: 3 (0, 1, 2)" in seeds
    # the control's failed run (and the grid holes of seed 3) are surfaced, not dropped
    assert "1 failed, 2 missing runs" in seeds
    report_date = json.loads((ablation / "report.json").read_text())["date"]
    assert date == report_date
    assert commit
    assert page == "[crossing](crossing.md)"
    # sweeps under the working directory are named relative to it
    assert f"`{ablation.name}`" in text
    assert f"`{control.name}`" in text


def test_lone_ablation_and_bad_inputs(make_sweep, tmp_path, capsys, monkeypatch) -> None:
    ablation = _sweep(make_sweep, "crossing", False, {"masknet": [1.1, 1.2, 1.3]})
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "README.md"
    write_readme(out, [ablation / "report.json"])
    text = out.read_text()
    assert "| no sweep |" in text  # the control column says the control is absent
    # the fixture's page does not exist under the test's working directory: the verdict says so
    assert f"page {CROSSING_REPORT['page']} not found" in text

    report = load_report(ablation)
    with pytest.raises(SuiteError, match="two ablation reports"):
        pair_reports([report, report])

    assert main(["--out", str(out), str(tmp_path / "nowhere")]) == 2
    assert "no report.json" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"schema": "other"}')
    assert main(["--out", str(out), str(tmp_path / "bad.json")]) == 2
    assert "not an ebr report" in capsys.readouterr().err
