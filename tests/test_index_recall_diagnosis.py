"""ebr.diagnostics.bench.index_recall on small vectors: its figures against numpy."""

from __future__ import annotations

import numpy as np
import pytest

from ebr.diagnostics.bench.index_recall import geometry, index_rows, variants
from ebr.serving.index import IndexConfig, ItemIndex


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_geometry_counts_duplicates_near_identical_items_and_boundary_ties() -> None:
    rng = np.random.default_rng(0)
    base = _unit(rng.standard_normal((400, 8)))
    # 100 exact copies and 100 near-identical (cosine > 0.9999) partners of the first 200 rows
    near = _unit(base[100:200] + 1e-4 * rng.standard_normal((100, 8)))
    vectors = np.concatenate([base, base[:100], near])
    queries = _unit(rng.standard_normal((20, 8)))
    figures = geometry(vectors, queries, k=10)
    assert figures["duplicate_vectors_share"] == pytest.approx(100 / 600)
    cosines = vectors @ vectors.T
    np.fill_diagonal(cosines, -1)
    expected = (cosines.max(axis=1) >= 0.999).mean()
    assert figures["near_identical_neighbour_share"] == pytest.approx(expected)
    scores = np.sort(queries.astype(np.float64) @ vectors.T.astype(np.float64), axis=1)[:, ::-1]
    assert figures["score_top10_mean"] == pytest.approx(scores[:, 9].mean(), abs=1e-5)
    assert figures["norm_std"] < 1e-6


def test_index_rows_score_recall_and_tie_tolerant_recall() -> None:
    rng = np.random.default_rng(1)
    vectors, queries = _unit(rng.standard_normal((3000, 8))), _unit(rng.standard_normal((30, 8)))
    configs = variants({"ivf": IndexConfig(factory="IVF32,Flat")}, {"ivf": ("nprobe", (1, 32))})
    assert sorted(configs) == [
        "ivf nprobe=1",
        "ivf nprobe=1 mips_l2",
        "ivf nprobe=32",
        "ivf nprobe=32 mips_l2",
    ]
    rows = index_rows(vectors, queries, {"flat": IndexConfig(), **configs}, k=10)
    assert rows["flat"]["ann_recall@10"] == 1.0
    assert rows["ivf nprobe=32"]["ann_recall@10"] == 1.0  # every list probed: exact
    # nprobe=1: the recall is the overlap with numpy's exact top 10

    index = ItemIndex(
        vectors, np.arange(3000), IndexConfig(factory="IVF32,Flat", search_params={"nprobe": 1})
    )
    found, _ = index.search(queries, 10)
    exact = np.argsort(-(queries.astype(np.float64) @ vectors.T.astype(np.float64)), axis=1)[:, :10]
    overlap = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact, strict=True)])
    assert rows["ivf nprobe=1"]["ann_recall@10"] == pytest.approx(overlap)
    assert rows["ivf nprobe=1"]["tolerant_recall@10"] >= rows["ivf nprobe=1"]["ann_recall@10"]
