"""Filtered (allow-list) search through faiss, measured (`scripts/index_filter_benchmark.py`).

The corpus is N random unit vectors of dimension d, each in one of G groups (think: interests);
every query is a random unit vector restricted to one random group, and the reference is the exact
top k within that group. Each method is timed (queries per second of the search alone, sub-index
builds timed separately) and scored (recall@k against the reference, and the share of queries that
got fewer than k results): faiss ID selectors on the full index, one sub-index per group, and
`ebr.serving.index.ItemIndex.search(..., allow=Csr)`, the implementation.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import faiss
import numpy as np

from ebr.data.csr import Csr
from ebr.serving.index import IndexConfig, ItemIndex, selector_parameters

Searcher = Callable[[], np.ndarray]


@dataclasses.dataclass(frozen=True)
class FilterBenchmark:
    """What one benchmark run measures.

    Args:
        n: corpus vectors.
        dim: their dimension.
        groups: the group counts measured, one scenario each.
        queries: queries per scenario.
        k: results per query.
        threads: faiss threads.
        seed: the vectors' and groups' seed.
    """

    n: int = 100_000
    dim: int = 64
    groups: tuple[int, ...] = (32,)
    queries: int = 1000
    k: int = 100
    threads: int = 1
    seed: int = 0


def _unit(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_filtered(
    vectors: np.ndarray, queries: np.ndarray, members: list[np.ndarray], query_group: np.ndarray, k: int
) -> np.ndarray:
    """The reference: per query, the exact top k (by float64 inner product) among its group's items.

    Args:
        vectors: the corpus.
        queries: the queries.
        members: per group, its items' rows of `vectors`.
        query_group: per query, its group.
        k: results per query.
    """
    reference = np.full((len(queries), k), -1, dtype=np.int64)
    for group, items in enumerate(members):
        rows = np.flatnonzero(query_group == group)
        scores = queries[rows].astype(np.float64) @ vectors[items].astype(np.float64).T
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        reference[rows, : top.shape[1]] = items[top]
    return reference


def recall(found: np.ndarray, reference: np.ndarray) -> float:
    """Mean share of each query's reference ids (ignoring -1 padding) that were found.

    Args:
        found: (queries, k) ids found, -1 padded.
        reference: (queries, k) reference ids, -1 padded.
    """
    shares = [
        len(set(f[f >= 0].tolist()) & set(r[r >= 0].tolist())) / max(1, int((r >= 0).sum()))
        for f, r in zip(found, reference, strict=True)
    ]
    return float(np.mean(shares))


def run_benchmark(settings: FilterBenchmark, flat: IndexConfig, hnsw: IndexConfig) -> list[dict[str, object]]:
    """Every method's figures for every group count, as rows of a table (printed as measured).

    Args:
        settings: the corpus, groups and queries.
        flat: the flat index preset (conf/index/flat.yaml).
        hnsw: the HNSW index preset (conf/index/hnsw.yaml).
    """
    faiss.omp_set_num_threads(settings.threads)
    rng = np.random.default_rng(settings.seed)
    vectors, queries = _unit(rng, settings.n, settings.dim), _unit(rng, settings.queries, settings.dim)
    print(
        f"{settings.n:,} x {settings.dim} unit vectors, {settings.queries:,} queries, top {settings.k},"
        f" {settings.threads} faiss thread(s)"
    )
    # the full indexes are built once and shared by every group count
    started = time.perf_counter()
    flat_index = ItemIndex(vectors, np.arange(settings.n), flat)
    flat_build = time.perf_counter() - started
    started = time.perf_counter()
    hnsw_index = ItemIndex(vectors, np.arange(settings.n), hnsw)
    hnsw_build = time.perf_counter() - started
    rows: list[dict[str, object]] = []
    for groups in settings.groups:
        hnsw_index.config = hnsw
        scenario = _Scenario(settings, groups, rng, vectors, queries)
        scenario.run((flat_index, flat_build), (hnsw_index, hnsw_build), flat)
        rows += scenario.rows
    return rows


class _Scenario:
    """Every method on one random assignment of items and queries to `groups` groups."""

    def __init__(
        self,
        settings: FilterBenchmark,
        groups: int | list[np.ndarray],
        rng: np.random.Generator,
        vectors: np.ndarray,
        queries: np.ndarray,
    ) -> None:
        """`groups`: a count (random groups, each query in a random one) or the groups' item rows
        (every query searched within each group in turn: one scenario per group is the caller's)."""
        self.vectors, self.queries = vectors, queries
        if isinstance(groups, int):
            item_group = rng.permutation(np.arange(settings.n) % groups)
            self.query_group = rng.integers(0, groups, settings.queries)
            self.members = [np.flatnonzero(item_group == g) for g in range(groups)]
        else:
            self.members = [np.asarray(items, dtype=np.int64) for items in groups]
            self.query_group = np.zeros(settings.queries, dtype=np.int64)
            groups = len(self.members)
        self.settings, self.groups = settings, groups
        self.reference = exact_filtered(vectors, queries, self.members, self.query_group, settings.k)
        self.bitmaps = []
        for items in self.members:
            bits = np.zeros(settings.n, dtype=bool)
            bits[items] = True
            self.bitmaps.append(np.packbits(bits, bitorder="little"))
        self.rows: list[dict[str, object]] = []

    def measure(self, method: str, search: Searcher, build_seconds: float = 0.0) -> None:
        """Time and score one method's search, and print its row."""
        k = self.settings.k
        started = time.perf_counter()
        found = search()
        seconds = time.perf_counter() - started
        self.rows.append(
            {
                "groups": self.groups,
                "method": method,
                "build_s": build_seconds,
                "queries_per_s": self.settings.queries / seconds,
                f"recall@{k}": recall(found, self.reference),
                "short": float((found < 0).any(axis=1).mean()),
            }
        )
        print(format_row(self.rows[-1], k), flush=True)

    def per_group(self, search_group: Callable[[int, np.ndarray], np.ndarray]) -> Searcher:
        """A search that asks `search_group(group, query rows)` for each group's queries."""

        def search() -> np.ndarray:
            found = np.full((self.settings.queries, self.settings.k), -1, dtype=np.int64)
            for group in range(self.groups):
                rows_of_group = np.flatnonzero(self.query_group == group)
                found[rows_of_group] = search_group(group, rows_of_group)
            return found

        return search

    def selector_search(self, index: faiss.Index, params: Callable[[faiss.IDSelector], object]) -> Searcher:
        """The full index searched through a bitmap selector of each query's group."""
        n, k, bitmaps = self.settings.n, self.settings.k, self.bitmaps

        def search_group(group: int, rows_of_group: np.ndarray) -> np.ndarray:
            selector = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bitmaps[group]))
            _, positions = index.search(self.queries[rows_of_group], k, params=params(selector))
            return positions

        return self.per_group(search_group)

    def run(
        self,
        flat: tuple[ItemIndex, float],
        hnsw: tuple[ItemIndex, float],
        flat_config: IndexConfig,
        ivf: tuple[ItemIndex, float] | None = None,
    ) -> None:
        """Every method, in the table's order (selectors on an IVF index too when `ivf` is given)."""
        (flat_index, flat_build), (hnsw_index, hnsw_build) = flat, hnsw
        hnsw_config = hnsw_index.config
        ef_search = int(hnsw_config.search_params["efSearch"])
        print(f"\n{self.groups} groups (~{self.settings.n // self.groups:,} items each)")
        print(format_header(self.settings.k))
        search = self.selector_search(flat_index.index, lambda s: faiss.SearchParameters(sel=s))
        self.measure("selector, flat", search, flat_build)
        for ef in (ef_search, 8 * ef_search, 32 * ef_search):
            search = self.selector_search(
                hnsw_index.index, lambda s, ef=ef: faiss.SearchParametersHNSW(sel=s, efSearch=ef)
            )
            self.measure(f"selector, hnsw efSearch={ef}", search, hnsw_build)
        if ivf is not None:
            self._ivf_selectors(*ivf)
        for name, preset in (("flat", flat_config), ("hnsw", hnsw_config)):
            self._sub_indexes(name, dataclasses.replace(preset, exact_filter_max=0))
        self._item_index(flat_index, hnsw_index)

    def _ivf_selectors(self, index: ItemIndex, build: float) -> None:
        """The IVF index searched through the selector at its nprobe and 4 and 16 times it."""
        nprobe = int(index.config.search_params.get("nprobe", 1))
        for probes in (nprobe, 4 * nprobe, 16 * nprobe):
            search = self.selector_search(
                index.index, lambda s, p=probes: selector_parameters(index.index, s, p)
            )
            self.measure(f"selector, {index.config.factory} nprobe={probes}", search, build)

    def _sub_indexes(self, name: str, config: IndexConfig) -> None:
        started = time.perf_counter()
        subs = [ItemIndex(self.vectors[items], items, config) for items in self.members]
        build = time.perf_counter() - started

        def search_sub(group: int, rows_of_group: np.ndarray) -> np.ndarray:
            return subs[group].search(self.queries[rows_of_group], self.settings.k)[0]

        self.measure(f"sub-index, {name}", self.per_group(search_sub), build)

    def _item_index(self, flat_index: ItemIndex, hnsw_index: ItemIndex) -> None:
        queries, k = self.queries, self.settings.k
        allow = Csr.from_pairs(
            np.concatenate([np.full(len(self.members[g]), q) for q, g in enumerate(self.query_group)]),
            np.concatenate([self.members[g] for g in self.query_group]),
            self.settings.queries,
        )
        self.measure("ItemIndex allow, flat", lambda: flat_index.search(queries, k, allow=allow)[0])
        self.measure("ItemIndex allow, hnsw", lambda: hnsw_index.search(queries, k, allow=allow)[0])
        # the same index with every allowed set above the exact limit: HNSW sub-indexes, built and
        # cached by the first call (timed as the build), searched by the second. Swapping the config of
        # a built index is a benchmark shortcut (it saves rebuilding the full HNSW graph): only
        # exact_filter_max differs, and the sub-index cache is keyed by the allowed set
        hnsw_index.config = dataclasses.replace(hnsw_index.config, exact_filter_max=0)
        started = time.perf_counter()
        hnsw_index.search(queries, k, allow=allow)
        build = time.perf_counter() - started
        self.measure(
            "ItemIndex allow, hnsw, exact_filter_max=0 (cached)",
            lambda: hnsw_index.search(queries, k, allow=allow)[0],
            build,
        )


def format_header(k: int) -> str:
    """The table's header line.

    Args:
        k: results per query.
    """
    return f"{'method':52s} {'build s':>8s} {'queries/s':>10s} {f'recall@{k}':>10s} {'short':>6s}"


def format_row(row: dict[str, object], k: int) -> str:
    """One method's line of the table.

    Args:
        row: the method's figures.
        k: results per query.
    """
    return (
        f"{row['method']:52s} {row['build_s']:8.1f} {row['queries_per_s']:10,.0f}"
        f" {row[f'recall@{k}']:10.4f} {row['short']:6.3f}"
    )


def run_on_vectors(
    vectors: np.ndarray,
    queries: np.ndarray,
    groups: dict[str, np.ndarray],
    configs: dict[str, IndexConfig],
    k: int = 100,
) -> list[dict[str, object]]:
    """Every method on given vectors (a trained model's pins and users), one scenario per group
    (e.g. a major and a minor interest's pins): every query searched within the group.

    Args:
        vectors: (N, d) item vectors.
        queries: (M, d) query vectors.
        groups: label -> the group's item rows of `vectors`.
        configs: "flat", "hnsw" and optionally "ivf" (its selectors are measured too).
        k: results per query.
    """
    settings = FilterBenchmark(n=len(vectors), dim=vectors.shape[1], queries=len(queries), k=k)
    ids = np.arange(len(vectors))
    built = {}
    for name, config in configs.items():
        started = time.perf_counter()
        built[name] = (ItemIndex(vectors, ids, config), time.perf_counter() - started)
        print(f"{name}: {config.factory} built in {built[name][1]:.1f} s", flush=True)
    rows: list[dict[str, object]] = []
    for label, items in groups.items():
        print(f"\n{label}: {len(items):,} of {len(vectors):,} items", flush=True)
        built["hnsw"][0].config = configs["hnsw"]
        scenario = _Scenario(settings, [items], np.random.default_rng(0), vectors, queries)
        scenario.run(built["flat"], built["hnsw"], configs["flat"], built.get("ivf"))
        rows += [{**row, "groups": label, "items": len(items)} for row in scenario.rows]
    return rows
