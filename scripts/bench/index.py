"""Flat vs approximate index over the trained model's own corpus and user embeddings."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from ebr.data.batching import FeatureGatherer
from ebr.data.schema import InteractionData
from ebr.evaluation.task import EvalTask
from ebr.models.artifact import load_artifact
from ebr.serving.embed import embed_rows, tower_encoder
from ebr.serving.index import IndexConfig, ItemIndex
from ebr.serving.service import ann_recall

SEARCH_K = 100


def bench_index(
    artifact: Path, data: InteractionData, task: EvalTask, configs: dict[str, IndexConfig], repeats: int
) -> dict[str, dict[str, float]]:
    """Build time, search users per second and ANN recall of each index over the same embeddings.

    Args:
        artifact: the saved model whose towers embed the corpus and the users.
        data: the world.
        task: the evaluation task (its corpus and users).
        configs: index name -> IndexConfig; must include "flat", the exact reference.
        repeats: searches per index; the median time is reported.
    """
    model, payload = load_artifact(artifact)
    features = payload["features"]
    pins = FeatureGatherer(data.pins, features["pin_sparse"], features["pin_dense"], "pins")
    users = FeatureGatherer(data.users, features["user_sparse"], features["user_dense"], "users")
    pin_embeddings = embed_rows(tower_encoder(model.pin_tower), pins, task.corpus)
    queries = embed_rows(tower_encoder(model.user_tower), users, task.user_ids)
    k = min(SEARCH_K, len(task.corpus))
    figures, found = {}, {}
    for name, config in configs.items():
        started = time.perf_counter()
        index = ItemIndex(pin_embeddings, task.corpus, config)
        build, seconds = time.perf_counter() - started, []
        for _ in range(repeats):
            started = time.perf_counter()
            found[name], _ = index.search(queries, k)
            seconds.append(time.perf_counter() - started)
        search = statistics.median(seconds)
        figures[name] = {"build_seconds": build, "search_seconds": search}
        figures[name]["search_users_per_second"] = len(queries) / search
    for name, row in figures.items():
        row[f"ann_recall@{SEARCH_K}"] = ann_recall(found[name], found["flat"], k)
        row["speedup_vs_flat"] = row["search_users_per_second"] / figures["flat"]["search_users_per_second"]
    return figures
