"""The filtered-search benchmark (ebr.diagnostics.index_filter, scripts/index_filter_benchmark.py its
command line) on a small corpus: every method runs and reports sane figures."""

import subprocess
import sys
from pathlib import Path

import hydra
import numpy as np
import pytest
from omegaconf import OmegaConf

from ebr.diagnostics.index_filter import FilterBenchmark, run_benchmark

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "index_filter_benchmark.py"


def _preset(name: str):
    return hydra.utils.instantiate(OmegaConf.load(REPO / "conf" / "index" / f"{name}.yaml"))


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    settings = FilterBenchmark(n=3000, dim=16, groups=(6, 2), queries=40, k=20)
    return run_benchmark(settings, _preset("flat"), _preset("hnsw"))


def test_every_method_is_measured_per_group_count(rows: list[dict]) -> None:
    for groups in (6, 2):
        methods = [row["method"] for row in rows if row["groups"] == groups]
        assert len(methods) == 9
        expected = {"selector, flat", "sub-index, flat", "sub-index, hnsw", "ItemIndex allow, flat"}
        assert expected <= set(methods)
    for row in rows:
        assert 0.0 <= row["recall@20"] <= 1.0
        assert 0.0 <= row["short"] <= 1.0
        assert row["queries_per_s"] > 0


def test_exact_methods_reproduce_the_float64_reference(rows: list[dict]) -> None:
    exact = [r for r in rows if r["method"] in ("selector, flat", "sub-index, flat", "ItemIndex allow, flat")]
    assert len(exact) == 6
    # the reference is an independent float64 brute force; float32 search may swap near ties only
    assert all(r["recall@20"] >= 0.999 for r in exact)
    assert all(r["short"] == 0.0 for r in exact)
    approximate = [r for r in rows if r["method"].startswith("sub-index, hnsw")]
    assert np.mean([r["recall@20"] for r in approximate]) > 0.9


@pytest.mark.parametrize("argv", [["--groups", "0"], ["--groups", "a,b"]])
def test_bad_arguments_are_rejected_naming_the_option(argv: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 2
    assert "--groups must be" in result.stderr


def test_the_script_prints_every_method() -> None:
    argv = ["--n", "600", "--dim", "8", "--groups", "3", "--queries", "10", "--k", "5"]
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "3 groups (~200 items each)" in result.stdout
    assert result.stdout.count("\n") >= 2 + 9
