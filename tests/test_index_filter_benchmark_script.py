"""scripts/index_filter_benchmark.py on a small corpus: every method runs and reports sane figures."""

import numpy as np
import pytest
from script_loader import load_script


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    bench = load_script("index_filter_benchmark.py")
    args = bench.parse_args(["--n", "3000", "--dim", "16", "--groups", "6,2", "--queries", "40", "--k", "20"])
    return bench.run_benchmark(args)


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


def test_bad_arguments_are_rejected() -> None:
    bench = load_script("index_filter_benchmark.py")
    with pytest.raises(SystemExit):
        bench.parse_args(["--groups", "0"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--groups", "a,b"])
