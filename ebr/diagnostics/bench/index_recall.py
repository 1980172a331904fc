"""Why an ANN index loses recall on a trained model's embeddings: measurements on the served vectors.

`python scripts/benchmark.py --sections serving_diagnosis --serving-model MODEL.pt` embeds every pin
that exists when the test window starts (the serving benchmark's whole corpus) with the saved
model and a sample of validation users, then measures:

- geometry: the vectors' norms (a spread makes inner product differ from L2), exact duplicate
  vectors, items whose nearest other item is near-identical (cosine >= 0.999), and how crowded the
  exact top 100's boundary is (items scoring within 0.001 of the 100th score), which bounds what
  ann_recall@100 can say;
- index=auto's operating points on these vectors (`diagnose`), and, for any configs,
  `index_rows`: ann_recall@100 on the sample, queries per second and "tolerant" recall (a
  returned item counts when its exact score is within 0.001 of the 100th), with and without the
  mips_l2 transform (`variants`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import faiss
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig

from ebr.data.schema import InteractionData
from ebr.serving.corpus import corpus_serving_time
from ebr.serving.index import IndexConfig, ItemIndex
from ebr.serving.index_auto import AUTO_K, AutoIndexConfig, ann_recall, choose_index
from ebr.serving.index_config import set_search_params
from ebr.serving.service import RetrievalService


class Served(NamedTuple):
    """A model's served vectors: pins (rows of `corpus`) and sample queries."""

    vectors: np.ndarray
    queries: np.ndarray
    corpus: np.ndarray
    data: InteractionData


# score distance that counts as a tie at the top-k boundary
TIE = 1e-3
NEAR_IDENTICAL = 0.999


def served_vectors(cfg: DictConfig, model: Path, sample: int) -> Served:
    """The pin vectors of every pin created before the test window and `sample` validation users'
    queries (with the corpus and the data).

    Args:
        cfg: the composed `ebr-train` config of the world the model was trained on.
        model: a saved model.pt.
        sample: validation users embedded (a fixed random sample).
    """
    data = instantiate(cfg.data)
    split = instantiate(cfg.split)(data)
    created = np.asarray(data.pins.meta["created_at"], dtype=np.int64)
    corpus = np.flatnonzero(created < corpus_serving_time(split, "test")).astype(np.int64)
    service = RetrievalService.from_artifact(model, data, corpus, IndexConfig(), progress=False)
    users = np.unique(split.val["user"].to_numpy())
    users = np.sort(np.random.default_rng(0).permutation(users)[:sample]).astype(np.int64)
    return Served(service.pin_vectors, service.user_vectors(users), corpus, data)


def geometry(vectors: np.ndarray, queries: np.ndarray, k: int = AUTO_K) -> dict[str, float]:
    """Norms, duplicates and the crowding of the exact top k's boundary.

    Args:
        vectors: (N, d) item vectors.
        queries: (M, d) query vectors.
        k: the cut-off.
    """
    norms = np.linalg.norm(vectors, axis=1)
    unique = np.unique(vectors, axis=0)
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors / norms[:, None])
    probe = vectors[:: max(1, len(vectors) // 5000)]
    cosines, _ = flat.search(np.ascontiguousarray(probe / np.linalg.norm(probe, axis=1)[:, None]), 2)
    scores, _ = faiss_exact(vectors, queries, 4 * k)
    boundary = scores[:, k - 1 : k]
    return {
        "items": float(len(vectors)),
        "norm_min": float(norms.min()),
        "norm_max": float(norms.max()),
        "norm_std": float(norms.std()),
        "duplicate_vectors_share": 1.0 - len(unique) / len(vectors),
        "near_identical_neighbour_share": float((cosines[:, 1] >= NEAR_IDENTICAL).mean()),
        "score_top1_mean": float(scores[:, 0].mean()),
        f"score_top{k}_mean": float(boundary.mean()),
        f"within_{TIE}_of_score_{k}_mean": float((np.abs(scores - boundary) <= TIE).sum(axis=1).mean()),
    }


def faiss_exact(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product (scores, rows) of the top k.

    Args:
        vectors: (N, d) item vectors.
        queries: (M, d) query vectors.
        k: results per query.
    """
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    return flat.search(queries, k)


def index_rows(
    vectors: np.ndarray, queries: np.ndarray, configs: dict[str, IndexConfig], k: int = AUTO_K
) -> dict[str, dict[str, Any]]:
    """Per config: build seconds, queries/s, ann_recall@k and the tie-tolerant recall.

    Args:
        vectors: (N, d) item vectors.
        queries: (M, d) query vectors.
        configs: name -> index config; configs sharing a factory, build and transform share a build.
        k: the cut-off.
    """
    exact_scores, exact = faiss_exact(vectors, queries, k)
    ids = np.arange(len(vectors), dtype=np.int64)
    built: dict[str, tuple[ItemIndex, float]] = {}
    rows: dict[str, dict[str, Any]] = {}
    for name, config in configs.items():
        key = json.dumps([config.factory, config.build_params, config.transform], sort_keys=True)
        if key not in built:
            started = time.perf_counter()
            built[key] = (ItemIndex(vectors, ids, config), time.perf_counter() - started)
        index, build = built[key]
        index.config = config
        set_search_params(index.index, config)
        started = time.perf_counter()
        found, _ = index.search(queries, k)
        seconds = time.perf_counter() - started
        found_scores = np.einsum("md,mkd->mk", queries, vectors[np.maximum(found, 0)])
        tolerant = ((found_scores >= exact_scores[:, k - 1 : k] - TIE) & (found >= 0)).sum(axis=1) / k
        rows[name] = {
            "factory": config.factory,
            "transform": config.transform,
            "search_params": dict(config.search_params),
            "build_seconds": build,
            "queries_per_second": len(queries) / seconds,
            f"ann_recall@{k}": ann_recall(found, exact.astype(np.int64), k),
            f"tolerant_recall@{k}": float(tolerant.mean()),
        }
        print(name, json.dumps(rows[name]), flush=True)
    return rows


def variants(
    base: dict[str, IndexConfig], sweeps: dict[str, tuple[str, Sequence[float]]]
) -> dict[str, IndexConfig]:
    """Each base config, its search parameter swept, with and without the mips_l2 transform.

    Args:
        base: name -> config.
        sweeps: name -> (parameter, values) swept on that config.
    """
    out: dict[str, IndexConfig] = {}
    for name, config in base.items():
        parameter, values = sweeps.get(name, ("", ()))
        for transform in ("none", "mips_l2"):
            suffix = "" if transform == "none" else " mips_l2"
            for value in values or (None,):
                params = dict(config.search_params)
                if value is not None:
                    params[parameter] = value
                label = name if value is None else f"{name} {parameter}={value:g}"
                out[label + suffix] = dataclasses.replace(config, search_params=params, transform=transform)
    return out


# the candidates measured on synthetic_xl's model (experiments/benchmark.md): exact-vector IVF lists
# probed up to 1/8 of the corpus, IVF-PQ re-ranking 16 k candidates, and 4-bit fast-scan PQ (SIMD
# lookup tables; its top k x k_factor_rf re-ranked exactly) at 32 and 64 sub-quantizers, 2,048 to
# 8,192 lists, and HNSW32; HNSW16 is left out (hnsw_large's row measures it)
DIAGNOSIS_CANDIDATES = (
    {"factory": "IVF2048,Flat", "sweep": {"nprobe": [16, 32, 64, 128, 256]}},
    {
        "factory": "IVF1024,PQ32,RFlat",
        "build_params": {"base_index": {"do_polysemous_training": False}},
        "search_params": {"k_factor_rf": 16},
        "sweep": {"nprobe": [32, 64, 128]},
    },
    {
        "factory": "IVF2048,PQ32x4fs,RFlat",
        "search_params": {"k_factor_rf": 8},
        "sweep": {"nprobe": [32, 64, 128]},
    },
    {
        "factory": "IVF4096,PQ32x4fs,RFlat",
        "search_params": {"k_factor_rf": 8},
        "sweep": {"nprobe": [64, 128, 256]},
    },
    # how far re-ranking more of fast-scan's candidates lifts its recall at a fixed nprobe
    {
        "factory": "IVF2048,PQ32x4fs,RFlat",
        "search_params": {"nprobe": 64},
        "sweep": {"k_factor_rf": [16, 32, 64]},
    },
    {
        "factory": "IVF2048,PQ32x4fs,RFlat",
        "search_params": {"nprobe": 128},
        "sweep": {"k_factor_rf": [16, 32, 64]},
    },
    {
        "factory": "IVF2048,PQ64x4fs,RFlat",
        "search_params": {"k_factor_rf": 8},
        "sweep": {"nprobe": [64, 128]},
    },
    {
        "factory": "IVF4096,PQ64x4fs,RFlat",
        "search_params": {"k_factor_rf": 8},
        "sweep": {"nprobe": [64, 96, 128, 192]},
    },
    {
        "factory": "IVF8192,PQ64x4fs,RFlat",
        "search_params": {"k_factor_rf": 8},
        "sweep": {"nprobe": [128, 192, 256, 384]},
    },
    # how deep fast-scan's top must be re-ranked: the k x k_factor_rf candidates it collects cost
    # time of their own, and 64 one-dimension sub-quantizers may rank well enough for a few k
    {
        "factory": "IVF4096,PQ64x4fs,RFlat",
        "search_params": {"nprobe": 128},
        "sweep": {"k_factor_rf": [2, 3, 4, 8]},
    },
    {
        "factory": "IVF4096,PQ64x4fs,RFlat",
        "search_params": {"k_factor_rf": 3},
        "sweep": {"nprobe": [96, 128, 160, 192]},
    },
    # how many lists: residual fast-scan codes (`fsr`), the top 2 k re-ranked, each list count at
    # the nprobe values that bring it near 0.95 (experiments/benchmark.md, "Fewer, longer lists")
    *(
        {
            "factory": f"IVF{lists},PQ64x4fsr,RFlat",
            "search_params": {"k_factor_rf": 2},
            "sweep": {"nprobe": probes},
        }
        for lists, probes in (
            (512, [24, 32, 40]),
            (1024, [40, 48, 56]),
            (2048, [64, 72, 80]),
            (4096, [96, 112, 128]),
            (8192, [128, 144, 192]),
        )
    ),
    # re-ranking on float16 copies of the vectors instead of float32 (index=auto's candidate)
    {
        "factory": "IVF1024,PQ64x4fsr,Refine(SQfp16)",
        "search_params": {"k_factor_rf": 2},
        "sweep": {"nprobe": [40, 48, 56]},
    },
    # a denser graph than hnsw_large's HNSW16 (about 90 s to build there)
    {
        "factory": "HNSW32,Flat",
        "build_params": {"hnsw": {"efConstruction": 200}},
        "sweep": {"efSearch": [64, 128, 256, 512]},
    },
)


def diagnose(cfg: DictConfig, model: Path, sample: int, auto: AutoIndexConfig) -> dict[str, Any]:
    """The served vectors' geometry, and index=auto's operating points on them (choose_index).

    Args:
        cfg: the composed `ebr-train` config of the model's world.
        model: the saved model.pt.
        sample: validation users measured.
        auto: the candidates and the target (e.g. AutoIndexConfig(candidates=DIAGNOSIS_CANDIDATES)).
    """
    vectors, queries, corpus, _ = served_vectors(cfg, model, sample)
    result: dict[str, Any] = {"geometry": geometry(vectors, queries)}
    print(json.dumps(result["geometry"]), flush=True)
    _, result["index_choice"] = choose_index(vectors, corpus, queries, auto)
    for number, point in enumerate(result["index_choice"]["operating_points"]):
        print(number, json.dumps(point), flush=True)
    return result
