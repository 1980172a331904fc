"""Filtered (allow-list) search: faiss ID selectors on the full index vs one sub-index per allowed set.

A benchmark, not a test: it measures and prints. The corpus is N random unit vectors of dimension d,
each in one of G groups (think: interests); every query is a random unit vector restricted to one
random group, and the reference is the exact top k within that group. For each method it prints
queries per second of the search alone (sub-index builds timed separately), recall@k against the
reference, and the share of queries that got fewer than k results.

Methods:
  - selector: the full index searched with `faiss.SearchParameters(sel=IDSelectorBitmap)` (flat, and
    HNSW at the preset's efSearch and larger ones, which HNSW needs to find enough allowed nodes);
  - sub-index: one index per group over its items (flat = exact; HNSW with the preset's parameters);
  - ItemIndex: `ebr.serving.index.ItemIndex.search(..., allow=Csr)`, the implementation, with the
    flat and hnsw presets (conf/index/) and, to time its HNSW sub-index path, exact_filter_max=0.

Usage:
    python scripts/index_filter_benchmark.py --groups 32,4   # 100k x 64, 32 then 4 groups, 1000 queries
    python scripts/index_filter_benchmark.py --n 5000 --groups 4 --queries 50    # seconds
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import faiss
import hydra
import numpy as np
from omegaconf import OmegaConf

from ebr.data.csr import Csr
from ebr.serving.index import IndexConfig, ItemIndex

CONF = Path(__file__).resolve().parent.parent / "conf" / "index"
Searcher = Callable[[], np.ndarray]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, validated.

    Args:
        argv: arguments without the program name (None: sys.argv[1:]).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="corpus vectors (default 100000)")
    parser.add_argument("--dim", type=int, default=64, help="dimension (default 64)")
    parser.add_argument("--groups", default="32", help="comma-separated group counts (default 32)")
    parser.add_argument("--queries", type=int, default=1000, help="queries (default 1000)")
    parser.add_argument("--k", type=int, default=100, help="results per query (default 100)")
    parser.add_argument("--threads", type=int, default=1, help="faiss threads (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("n", "dim", "queries", "k", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    try:
        args.groups = [int(g) for g in args.groups.split(",")]
    except ValueError:
        parser.error(f"--groups must be comma-separated integers, got {args.groups!r}")
    if not all(1 <= g <= args.n for g in args.groups):
        parser.error(f"--groups must be between 1 and --n ({args.n}), got {args.groups}")
    return args


def _unit(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_filtered(vectors: np.ndarray, queries: np.ndarray, members: list[np.ndarray], query_group, k):
    """The reference: per query, the exact top k (by float64 inner product) among its group's items."""
    reference = np.full((len(queries), k), -1, dtype=np.int64)
    for group, items in enumerate(members):
        rows = np.flatnonzero(query_group == group)
        scores = queries[rows].astype(np.float64) @ vectors[items].astype(np.float64).T
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        reference[rows, : top.shape[1]] = items[top]
    return reference


def recall(found: np.ndarray, reference: np.ndarray) -> float:
    """Mean share of each query's reference ids (ignoring -1 padding) that were found."""
    shares = [
        len(set(f[f >= 0].tolist()) & set(r[r >= 0].tolist())) / max(1, int((r >= 0).sum()))
        for f, r in zip(found, reference, strict=True)
    ]
    return float(np.mean(shares))


def preset(name: str, **changes) -> IndexConfig:
    config = hydra.utils.instantiate(OmegaConf.load(CONF / f"{name}.yaml"))
    return dataclasses.replace(config, **changes) if changes else config


def run_benchmark(args: argparse.Namespace) -> list[dict[str, object]]:
    """Every method's figures for every group count, as rows of a table.

    Args:
        args: the parsed command line.
    """
    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    vectors, queries = _unit(rng, args.n, args.dim), _unit(rng, args.queries, args.dim)
    print(
        f"{args.n:,} x {args.dim} unit vectors, {args.queries:,} queries, top {args.k},"
        f" {args.threads} faiss thread(s)"
    )
    # the full indexes are built once and shared by every group count
    started = time.perf_counter()
    flat_index = ItemIndex(vectors, np.arange(args.n), preset("flat"))
    flat_build = time.perf_counter() - started
    hnsw_config = preset("hnsw")
    started = time.perf_counter()
    hnsw_index = ItemIndex(vectors, np.arange(args.n), hnsw_config)
    hnsw_build = time.perf_counter() - started
    rows: list[dict[str, object]] = []
    for groups in args.groups:
        hnsw_index.config = hnsw_config
        rows += _scenario(
            args, groups, rng, vectors, queries, (flat_index, flat_build), (hnsw_index, hnsw_build)
        )
    return rows


def _scenario(
    args: argparse.Namespace,
    groups: int,
    rng: np.random.Generator,
    vectors: np.ndarray,
    queries: np.ndarray,
    flat: tuple[ItemIndex, float],
    hnsw: tuple[ItemIndex, float],
) -> list[dict[str, object]]:
    """Every method on one random assignment of items and queries to `groups` groups."""
    (flat_index, flat_build), (hnsw_index, hnsw_build) = flat, hnsw
    item_group = rng.permutation(np.arange(args.n) % groups)
    query_group = rng.integers(0, groups, args.queries)
    members = [np.flatnonzero(item_group == g) for g in range(groups)]
    reference = exact_filtered(vectors, queries, members, query_group, args.k)
    hnsw_config = hnsw_index.config
    ef_search = int(hnsw_config.search_params["efSearch"])
    rows: list[dict[str, object]] = []

    def measure(method: str, search: Searcher, build_seconds: float = 0.0) -> None:
        started = time.perf_counter()
        found = search()
        seconds = time.perf_counter() - started
        rows.append(
            {
                "groups": groups,
                "method": method,
                "build_s": build_seconds,
                "queries_per_s": args.queries / seconds,
                f"recall@{args.k}": recall(found, reference),
                "short": float((found < 0).any(axis=1).mean()),
            }
        )
        print(_format_row(rows[-1], args.k), flush=True)

    def per_group(search_group: Callable[[int, np.ndarray], np.ndarray]) -> Searcher:
        def search() -> np.ndarray:
            found = np.full((args.queries, args.k), -1, dtype=np.int64)
            for group in range(groups):
                rows_of_group = np.flatnonzero(query_group == group)
                found[rows_of_group] = search_group(group, rows_of_group)
            return found

        return search

    bitmaps = []
    for items in members:
        bits = np.zeros(args.n, dtype=bool)
        bits[items] = True
        bitmaps.append(np.packbits(bits, bitorder="little"))

    def selector_search(index: faiss.Index, params: Callable[[faiss.IDSelector], object]) -> Searcher:
        def search_group(group: int, rows_of_group: np.ndarray) -> np.ndarray:
            selector = faiss.IDSelectorBitmap(args.n, faiss.swig_ptr(bitmaps[group]))
            _, positions = index.search(queries[rows_of_group], args.k, params=params(selector))
            return positions

        return per_group(search_group)

    print(f"\n{groups} groups (~{args.n // groups:,} items each)")
    print(_format_header(args.k))
    measure(
        "selector, flat",
        selector_search(flat_index.index, lambda s: faiss.SearchParameters(sel=s)),
        flat_build,
    )
    for ef in (ef_search, 8 * ef_search, 32 * ef_search):
        measure(
            f"selector, hnsw efSearch={ef}",
            selector_search(
                hnsw_index.index, lambda s, ef=ef: faiss.SearchParametersHNSW(sel=s, efSearch=ef)
            ),
            hnsw_build,
        )
    for name in ("flat", "hnsw"):
        config = preset(name, exact_filter_max=0)
        started = time.perf_counter()
        subs = [ItemIndex(vectors[items], items, config) for items in members]
        build = time.perf_counter() - started

        def search_sub(group: int, rows_of_group: np.ndarray, subs: list[ItemIndex] = subs) -> np.ndarray:
            return subs[group].search(queries[rows_of_group], args.k)[0]

        measure(f"sub-index, {name}", per_group(search_sub), build)

    allow = Csr.from_pairs(
        np.concatenate([np.full(len(members[g]), q) for q, g in enumerate(query_group)]),
        np.concatenate([members[g] for g in query_group]),
        args.queries,
    )
    measure("ItemIndex allow, flat", lambda: flat_index.search(queries, args.k, allow=allow)[0])
    measure("ItemIndex allow, hnsw", lambda: hnsw_index.search(queries, args.k, allow=allow)[0])
    # the same index with every allowed set above the exact limit: HNSW sub-indexes, built and
    # cached by the first call (timed as the build), searched by the second. Swapping the config of
    # a built index is a benchmark shortcut (it saves rebuilding the full HNSW graph): only
    # exact_filter_max differs, and the sub-index cache is keyed by the allowed set
    hnsw_index.config = dataclasses.replace(hnsw_config, exact_filter_max=0)
    started = time.perf_counter()
    hnsw_index.search(queries, args.k, allow=allow)
    build = time.perf_counter() - started
    measure(
        "ItemIndex allow, hnsw, exact_filter_max=0 (cached)",
        lambda: hnsw_index.search(queries, args.k, allow=allow)[0],
        build,
    )
    return rows


def _format_header(k: int) -> str:
    return f"{'method':52s} {'build s':>8s} {'queries/s':>10s} {f'recall@{k}':>10s} {'short':>6s}"


def _format_row(row: dict[str, object], k: int) -> str:
    return (
        f"{row['method']:52s} {row['build_s']:8.1f} {row['queries_per_s']:10,.0f}"
        f" {row[f'recall@{k}']:10.4f} {row['short']:6.3f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its table.

    Args:
        argv: arguments without the program name (None: sys.argv[1:]).
    """
    run_benchmark(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
