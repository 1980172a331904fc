"""Approximate indexes against exact search on a large synthetic corpus (independent of any model).

The corpus and the queries are unit vectors drawn from one Gaussian mixture: `clusters` centres
uniform on the sphere, each point = its centre + isotropic noise of norm about `spread`, then
L2-normalised. Learned embeddings are clustered (interests, near-duplicates), and uniform vectors
on a 64-dimensional sphere are the hardest case for any ANN index (every point is almost
equidistant from every other), so a mixture is the more realistic stand-in. Queries come from the
same mixture, as user embeddings live in the pin embeddings' space.

Each index is built through ebr's own path (`ebr.serving.index.ItemIndex`, the factory string
sized to the corpus) and searched for the top k; its `ann_recall@k` is the overlap with the flat
index's top k and its QPS ratio is its queries per second over the flat index's, both measured in
the same run with the same thread count.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

import faiss
import numpy as np

from ebr.diagnostics.bench.vectors import gaussian_mixture
from ebr.serving.index import IndexConfig, ItemIndex
from ebr.serving.service import ann_recall


def bench_ann_scale(
    configs: Mapping[str, IndexConfig],
    n: int,
    n_queries: int,
    dim: int = 64,
    clusters: int = 1000,
    spread: float = 1.0,
    k: int = 100,
    repeats: int = 1,
    seed: int = 0,
    sweeps: Mapping[str, Sequence[Mapping[str, float]]] | None = None,
) -> dict[str, Any]:
    """Build time, queries per second, QPS ratio to flat and ann_recall@k of each index.

    Args:
        configs: name -> IndexConfig; must hold "flat" (exact search, the reference).
        n: corpus size.
        n_queries: queries searched (one batch, as evaluation searches all users at once).
        dim: vector dimension.
        clusters: mixture components (see `gaussian_mixture`).
        spread: noise norm (see `gaussian_mixture`).
        k: results per query.
        repeats: searches per index; the median time is reported.
        seed: corpus seed; queries use seed + 1 and the same centres.
        sweeps: index name -> further search-parameter settings searched on the same built index
            (e.g. {"hnsw": [{"efSearch": 64}, {"efSearch": 256}]}), one extra row each named
            "name param=value": a trade-off curve for one build.
    """
    if "flat" not in configs or not configs["flat"].is_exact:
        raise ValueError("configs must hold an exact 'flat' index: it is the reference")
    started = time.perf_counter()
    corpus = gaussian_mixture(n, dim, clusters, spread, seed)
    queries = gaussian_mixture(n_queries, dim, clusters, spread, seed + 1)
    generation = time.perf_counter() - started
    ids = np.arange(n, dtype=np.int64)
    k = min(k, n)
    indexes: dict[str, ItemIndex] = {}
    rows: dict[str, dict[str, Any]] = {}
    # every (row name, index name, search parameters) searched
    settings: list[tuple[str, str, dict[str, float]]] = []
    for name, config in configs.items():
        started = time.perf_counter()
        indexes[name] = ItemIndex(corpus, ids, config)
        build = time.perf_counter() - started
        variants = [(name, dict(config.search_params))]
        for params in (sweeps or {}).get(name, ()):
            label = " ".join(f"{key}={value:g}" for key, value in params.items())
            variants.append((f"{name} {label}", {**config.search_params, **params}))
        for row_name, params in variants:
            settings.append((row_name, name, params))
            rows[row_name] = {
                "factory": indexes[name].factory,
                "build_params": dict(config.build_params),
                "search_params": params,
                "build_seconds": build,
            }
    # rounds over every setting rather than all repeats of one after another: on a shared
    # machine a load change then slows every row of a round alike, and the ratios survive it
    seconds: dict[str, list[float]] = {row_name: [] for row_name, _, _ in settings}
    found: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for row_name, name, params in settings:
            _set_search_params(indexes[name], params)
            started = time.perf_counter()
            found[row_name], _ = indexes[name].search(queries, k)
            seconds[row_name].append(time.perf_counter() - started)
    for row_name, row in rows.items():
        row["search_seconds"] = statistics.median(seconds[row_name])
        row["queries_per_second"] = n_queries / row["search_seconds"]
    flat_qps = rows["flat"]["queries_per_second"]
    for name, row in rows.items():
        row[f"ann_recall@{k}"] = ann_recall(found[name], found["flat"], k)
        row["qps_ratio"] = row["queries_per_second"] / flat_qps
    return {
        "corpus": n,
        "queries": n_queries,
        "dim": dim,
        "clusters": clusters,
        "spread": spread,
        "k": k,
        "generation_seconds": generation,
        "kinds": rows,
    }


def _set_search_params(index: ItemIndex, params: Mapping[str, float]) -> None:
    """Set faiss ParameterSpace parameters on a built index (as IndexConfig.search_params does)."""
    space = faiss.ParameterSpace()
    for key, value in params.items():
        space.set_index_parameter(index.index, key, float(value))
