"""`index=auto`: the item index chosen for a recall target on the model's own embeddings.

Presets tuned on synthetic vectors (conf/index/*_large.yaml) lose recall on a trained model's
embeddings (experiments/benchmark.md, "Serving at scale"), so the auto index measures instead of
assuming: every candidate factory string is built once over the serving corpus, each of its
search settings (faiss `ParameterSpace` values, e.g. efSearch or nprobe) is timed on a sample of
query vectors and scored by ann_recall@k against exact search on the same sample, and the fastest
setting whose recall meets `target_recall` is served; exact search (flat) when none does. The
sample is the caller's (serving passes validation users, never the test window's), and the test
evaluation then uses the chosen index unchanged.

Each measured setting is an operating point: {factory, sized_factory, build_params,
search_params, build_seconds, queries_per_second, ann_recall@k, meets_target}; flat is point 0.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

from ebr.data.csr import Csr
from ebr.serving.index import ItemIndex
from ebr.serving.index_config import IndexConfig, set_search_params

# the ANN recall cut-off every report uses (ebr.serving.service.ANN_RECALL_K is this)
AUTO_K = 100
# searches of the sample per setting; the fastest counts (a shared machine's load only slows)
_TIMING_REPEATS = 2


@dataclass(frozen=True)
class AutoCandidate:
    """One factory string and the search settings tried on it (one build, several searches).

    Args:
        factory: the faiss index_factory string (sized to the corpus as IndexConfig sizes it).
        build_params: build-time attributes, as IndexConfig.build_params.
        search_params: search parameters every setting shares, as IndexConfig.search_params.
        sweep: one ParameterSpace parameter and its values, e.g. {"efSearch": [64, 128, 256]}; each
            value is one operating point (empty: the shared search_params alone).
        transform: IndexConfig.transform of the candidate.
    """

    factory: str
    build_params: Mapping[str, Any] = field(default_factory=dict)
    search_params: Mapping[str, Any] = field(default_factory=dict)
    sweep: Mapping[str, Sequence[float]] = field(default_factory=dict)
    transform: str = "none"

    def __post_init__(self) -> None:
        if len(self.sweep) > 1:
            raise ValueError(f"index.candidates: sweep one parameter per candidate, got {dict(self.sweep)}")
        for name, values in self.sweep.items():
            if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not values:
                raise ValueError(f"index.candidates: sweep.{name} must be a non-empty list, got {values!r}")
        object.__setattr__(self, "sweep", {name: [float(v) for v in vs] for name, vs in self.sweep.items()})
        # every setting is an IndexConfig: checks the factory and parameter names now
        for config in self.configs(exact_filter_max=0):
            del config

    def configs(self, exact_filter_max: int) -> list[IndexConfig]:
        """One IndexConfig per operating point of this candidate.

        Args:
            exact_filter_max: IndexConfig.exact_filter_max of each.
        """
        settings = [dict(self.search_params)]
        for name, values in self.sweep.items():
            settings = [{**self.search_params, name: value} for value in values]
        return [
            IndexConfig(
                factory=self.factory,
                build_params=dict(self.build_params),
                search_params=params,
                exact_filter_max=exact_filter_max,
                transform=self.transform,
            )
            for params in settings
        ]


@dataclass(frozen=True)
class AutoIndexConfig:
    """Choose the index for a recall target (conf/index/auto.yaml).

    Args:
        target_recall: the ann_recall@100 the served index must reach on the sample (0 < t <= 1; a
            target above 1 can never be met and serves flat).
        sample_users: query vectors measured (the first this many of the caller's, which serving
            draws evenly from the validation users).
        candidates: the factory strings and search settings tried (mappings of AutoCandidate's fields).
        min_corpus: corpora below this many items are served flat without measuring (an ANN index
            does not pay below a few thousand items; the tiny world's corpus is ~700).
        exact_filter_max: IndexConfig.exact_filter_max of the chosen index.
    """

    target_recall: float = 0.95
    sample_users: int = 2000
    candidates: Sequence[Any] = ()
    min_corpus: int = 0
    exact_filter_max: int = 50_000

    def __post_init__(self) -> None:
        target = self.target_recall
        if isinstance(target, bool) or not isinstance(target, int | float) or not target > 0:
            raise ValueError(f"index.target_recall must be a number > 0, got {target!r}")
        for name in ("sample_users", "min_corpus", "exact_filter_max"):
            value, least = getattr(self, name), int(name == "sample_users")
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"index.{name} must be an integer >= {least}, got {value!r}")
        built = []
        for position, candidate in enumerate(self.candidates):
            if isinstance(candidate, AutoCandidate):
                built.append(candidate)
                continue
            if not isinstance(candidate, Mapping):
                raise ValueError(f"index.candidates[{position}] must be a mapping, got {candidate!r}")
            try:
                built.append(AutoCandidate(**dict(candidate)))
            except TypeError as error:
                raise ValueError(f"index.candidates[{position}]: {error}") from error
        object.__setattr__(self, "candidates", tuple(built))

    @property
    def is_exact(self) -> bool:
        """Not known before the choice (see ItemIndex.config.is_exact of the chosen index)."""
        return False


def choose_index(
    vectors: np.ndarray, item_ids: np.ndarray, queries: np.ndarray, auto: AutoIndexConfig
) -> tuple[ItemIndex, dict[str, Any]]:
    """Build and measure every candidate setting; serve the fastest that meets the target.

    Args:
        vectors: (N, d) item vectors, as ItemIndex takes them.
        item_ids: (N,) item ids.
        queries: (M, d) query vectors of the sample (M >= 1); the first auto.sample_users are used.
        auto: the candidates and the target.

    Returns:
        (the chosen index, the record: {"target_recall", "sample_queries", "chosen" (position in
        "operating_points"), "operating_points"}).
    """
    queries = np.ascontiguousarray(np.asarray(queries, dtype=np.float32)[: auto.sample_users])
    if len(queries) == 0:
        raise ValueError("index=auto: no query vectors to measure the candidates on (no validation users?)")
    flat_config = IndexConfig(exact_filter_max=auto.exact_filter_max)
    started = time.perf_counter()
    flat = ItemIndex(vectors, item_ids, flat_config)
    flat_point, exact = _measure(flat, flat_config, queries, None, time.perf_counter() - started)
    points, indexes = [flat_point], [(flat, flat_config)]
    if len(item_ids) >= auto.min_corpus and len(item_ids) > AUTO_K:
        for candidate in auto.candidates:
            configs = candidate.configs(auto.exact_filter_max)
            started = time.perf_counter()
            index = ItemIndex(vectors, item_ids, configs[0])
            build = time.perf_counter() - started
            for config in configs:
                set_search_params(index.index, config)
                points.append(_measure(index, config, queries, exact, build)[0])
                indexes.append((index, config))
    for point in points:
        point["meets_target"] = bool(point[f"ann_recall@{AUTO_K}"] >= auto.target_recall)
    meeting = [i for i, point in enumerate(points) if point["meets_target"]] or [0]
    chosen = max(meeting, key=lambda i: points[i]["queries_per_second"])
    index, config = indexes[chosen]
    set_search_params(index.index, config)
    index.config = config
    record = {
        "target_recall": float(auto.target_recall),
        "sample_queries": len(queries),
        "chosen": chosen,
        "operating_points": points,
    }
    return index, record


def _measure(
    index: ItemIndex, config: IndexConfig, queries: np.ndarray, exact: np.ndarray | None, build: float
) -> tuple[dict[str, Any], np.ndarray]:
    """One operating point: the sample's search timed (best of _TIMING_REPEATS) and its recall."""
    k = min(AUTO_K, len(index))
    best = np.inf
    for _ in range(_TIMING_REPEATS):
        started = time.perf_counter()
        found, _ = index.search(queries, k)
        best = min(best, time.perf_counter() - started)
    recall = 1.0 if exact is None else ann_recall(found, exact, k)
    point = {
        "factory": config.factory,
        "sized_factory": config.sized_factory(len(index), index.dim),
        "transform": config.transform,
        "build_params": dataclasses.asdict(config)["build_params"],
        "search_params": dict(config.search_params),
        "build_seconds": build,
        "queries_per_second": len(queries) / max(best, 1e-9),
        f"ann_recall@{AUTO_K}": recall,
        "faiss_threads": faiss.omp_get_max_threads(),
    }
    return point, found


def ann_recall(approx: np.ndarray, exact: np.ndarray, k: int = AUTO_K) -> float:
    """Mean overlap of the approximate and the exact top k: |approx ∩ exact| / k per query.

    When the exact search returns fewer than k items (a corpus smaller than k), a query's
    denominator is the number it returned, so a perfect index always scores 1.

    Args:
        approx: (M, >= k) ids from the index under test, -1 padded.
        exact: (M, >= k) ids from exact search.
        k: cut-off.
    """
    approx, exact = np.asarray(approx), np.asarray(exact)
    for name, matrix in (("approx", approx), ("exact", exact)):
        if matrix.ndim != 2 or matrix.dtype.kind not in "iu" or matrix.shape[1] < k:
            raise ValueError(
                f"{name} must be an (M, >= {k}) integer id matrix, got {matrix.dtype} {matrix.shape}"
            )
    if approx.shape[0] != exact.shape[0]:
        raise ValueError(f"approx has {approx.shape[0]} rows, exact {exact.shape[0]}")
    exact, approx = exact[:, :k].astype(np.int64), approx[:, :k].astype(np.int64)
    rows, columns = np.nonzero(exact >= 0)
    found = Csr.from_pairs(rows, exact[rows, columns], len(exact))
    overlap = (found.contains(approx) & (approx >= 0)).sum(axis=1)
    denominator = found.lengths()
    scored = denominator > 0
    if not scored.any():
        raise ValueError("exact: no query has any result, ANN recall is undefined")
    return float(np.mean(overlap[scored] / denominator[scored]))


def choice_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """The choice as metrics.json numbers (`serving/index_choice` = the chosen point's position,
    0 = flat; its recall and queries/s; flat's queries/s on the same sample).

    Args:
        record: choose_index's record.
    """
    point = record["operating_points"][record["chosen"]]
    flat = record["operating_points"][0]
    return {
        "serving/index_choice": float(record["chosen"]),
        f"serving/index_choice_ann_recall@{AUTO_K}": float(point[f"ann_recall@{AUTO_K}"]),
        "serving/index_choice_queries_per_second": float(point["queries_per_second"]),
        "serving/index_choice_flat_queries_per_second": float(flat["queries_per_second"]),
        "serving/index_choice_operating_points": float(len(record["operating_points"])),
    }
