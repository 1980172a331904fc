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


def test_given_groups_on_given_vectors_measure_every_method_with_ivf_selectors() -> None:
    """run_on_vectors (the trained-model path): each group is one scenario; exact methods find the
    float64 top k within the group, so their recall is 1."""
    from ebr.diagnostics.index_filter import exact_filtered, recall, run_on_vectors

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((2000, 8)).astype(np.float32)
    queries = rng.standard_normal((30, 8)).astype(np.float32)
    groups = {"big": np.arange(0, 2000, 2), "small": np.arange(1, 400, 7)}
    configs = {
        "flat": _preset("flat"),
        "hnsw": _preset("hnsw"),
        "ivf": hydra.utils.instantiate(OmegaConf.create({**OmegaConf.load(REPO / "conf/index/ivfpq.yaml")})),
    }
    rows = run_on_vectors(vectors, queries, groups, configs, k=10)
    by = {(row["groups"], row["method"]): row for row in rows}
    assert {label for label, _ in by} == {"big", "small"}
    assert any(method.startswith("selector, IVF") for _, method in by)
    for label in groups:
        assert by[(label, "selector, flat")]["recall@10"] == 1.0
        assert by[(label, "sub-index, flat")]["recall@10"] == 1.0
        assert by[(label, "ItemIndex allow, flat")]["recall@10"] == 1.0
    # the reference itself, checked against numpy on one query
    reference = exact_filtered(vectors, queries[:1], [groups["small"]], np.zeros(1, np.int64), 10)
    scores = queries[0].astype(np.float64) @ vectors[groups["small"]].astype(np.float64).T
    assert recall(reference, groups["small"][np.argsort(-scores)[:10]][None, :]) == 1.0
