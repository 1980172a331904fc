"""Shared vectors, constants and brute-force references for the item-index tests."""

from __future__ import annotations

import numpy as np

from ebr.data.csr import Csr
from ebr.serving.index import IndexConfig

HNSW = IndexConfig(
    factory="HNSW32,Flat", build_params={"hnsw": {"efConstruction": 200}}, search_params={"efSearch": 128}
)
IVFPQ = IndexConfig(
    factory="IVF1024,PQ16", build_params={"do_polysemous_training": False}, search_params={"nprobe": 16}
)


def _normalised(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _clustered(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """Unit vectors around n // 50 centres: embeddings have structure, random Gaussians have none."""
    centres = rng.standard_normal((max(4, n // 50), dim))
    x = (centres[rng.integers(0, len(centres), n)] + 0.5 * rng.standard_normal((n, dim))).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute_top(
    items: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int, banned=None, allowed=None
) -> list[list[int]]:
    scores = queries.astype(np.float64) @ items.astype(np.float64).T
    result = []
    for row, query_scores in enumerate(scores):
        ranked = [int(ids[j]) for j in np.argsort(-query_scores, kind="stable")]
        if banned is not None:
            ranked = [i for i in ranked if i not in banned[row]]
        if allowed is not None:
            ranked = [i for i in ranked if i in allowed[row]]
        result.append(ranked[:k])
    return result


def _overlap(found: np.ndarray, reference: list[list[int]]) -> float:
    return float(
        np.mean([len(set(f.tolist()) & set(r)) / len(r) for f, r in zip(found, reference, strict=True)])
    )


def _csr(sets: list[set[int]]) -> Csr:
    rows = np.concatenate([np.full(len(s), q) for q, s in enumerate(sets)]).astype(np.int64)
    return Csr.from_pairs(rows, np.concatenate([sorted(s) for s in sets]).astype(np.int64), len(sets))
