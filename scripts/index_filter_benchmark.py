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

On a trained model (`--model model.pt --data "data=synthetic_xl"`): the corpus is every pin that
exists when the test window starts, embedded by the model, the queries are validation users, and
the groups are two interests' pins (conditional retrieval's pre filter): the major one (the most
pins) and a minor one (the interest at the 10th percentile of pins per interest); the full indexes
are flat, `hnsw_large` and `ivfpq_large` (whose IVF is searched through the selector too).

Usage:
    python scripts/index_filter_benchmark.py --groups 32,4   # 100k x 64, 32 then 4 groups, 1000 queries
    python scripts/index_filter_benchmark.py --model outputs/xl/model.pt --data data=synthetic_xl --threads 2
    python scripts/index_filter_benchmark.py --n 5000 --groups 4 --queries 50    # seconds
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import faiss
import hydra
import numpy as np
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from ebr.config import register_schemas
from ebr.data.schema import InteractionData
from ebr.diagnostics.bench.index_recall import served_vectors
from ebr.diagnostics.index_filter import FilterBenchmark, run_benchmark, run_on_vectors
from ebr.serving.index import IndexConfig
from ebr.serving.interests import pin_tags, pins_by_interest

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
    parser.add_argument("--model", type=Path, default=None, help="a trained model.pt: its pins and users")
    parser.add_argument("--data", default="data=synthetic_xl", help="the model world overrides (--model)")
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


def compose_train(overrides: Sequence[str]) -> DictConfig:
    """The `ebr-train` config with these overrides (what a job of that world composes).

    Args:
        overrides: Hydra overrides, e.g. ["data=synthetic_xl"].
    """
    register_schemas()
    # a caller (a test, an earlier compose) may have left Hydra initialised
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF.parent), version_base="1.3"):
        return compose("train", overrides=[*overrides, "logger=none"])


def interest_groups(data: InteractionData, corpus: np.ndarray) -> dict[str, np.ndarray]:
    """The major interest's and a minor interest's pins, as rows of `corpus`.

    Args:
        data: the data set (its pins' interest tags).
        corpus: sorted pin ids.
    """
    by_interest = pins_by_interest(pin_tags(data), corpus)
    ranked = sorted(by_interest, key=lambda interest: (-len(by_interest[interest]), interest))
    major, minor = ranked[0], ranked[int(0.9 * (len(ranked) - 1))]
    return {
        f"major interest {major}": np.searchsorted(corpus, by_interest[major]),
        f"minor interest {minor}": np.searchsorted(corpus, by_interest[minor]),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its table.

    Args:
        argv: arguments without the program name (None: sys.argv[1:]).
    """
    args = parse_args(argv)
    if args.model is not None:
        faiss.omp_set_num_threads(args.threads)
        served = served_vectors(compose_train(args.data.split()), args.model, args.queries)
        configs = {"flat": preset("flat"), "hnsw": preset("hnsw_large"), "ivf": preset("ivfpq_large")}
        groups = interest_groups(served.data, served.corpus)
        run_on_vectors(served.vectors, served.queries, groups, configs, args.k)
        return 0
    settings = FilterBenchmark(
        args.n, args.dim, tuple(args.groups), args.queries, args.k, args.threads, args.seed
    )
    run_benchmark(settings, preset("flat"), preset("hnsw"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
