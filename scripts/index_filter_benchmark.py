"""Filtered (allow-list) search: faiss ID selectors on the full index vs one sub-index per allowed set.

A benchmark, not a test: it measures and prints. The corpus is N random unit vectors of dimension d,
each in one of G groups (think: interests); every query is a random unit vector restricted to one
random group, and the reference is the exact top k within that group. For each method it prints
queries per second of the search alone (sub-index builds timed separately), recall@k against the
reference, and the share of queries that got fewer than k results. The measurements are
`ebr.diagnostics.index_filter`; this script is their command line.

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
import sys
from collections.abc import Sequence
from pathlib import Path

import hydra
from omegaconf import OmegaConf

from ebr.diagnostics.index_filter import FilterBenchmark, run_benchmark
from ebr.serving.index import IndexConfig

CONF = Path(__file__).resolve().parent.parent / "conf" / "index"


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


def preset(name: str) -> IndexConfig:
    """The conf/index preset `name`."""
    return hydra.utils.instantiate(OmegaConf.load(CONF / f"{name}.yaml"))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its table.

    Args:
        argv: arguments without the program name (None: sys.argv[1:]).
    """
    args = parse_args(argv)
    settings = FilterBenchmark(
        args.n, args.dim, tuple(args.groups), args.queries, args.k, args.threads, args.seed
    )
    run_benchmark(settings, preset("flat"), preset("hnsw"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
