"""Serving a saved two-tower model: corpus and user embeddings -> score terms -> index -> ranked ids.

Built from `model.pt` alone (no trainer, no torchrec sharding): pin embeddings are computed offline
for the serving corpus, extended with the score terms' columns and put into the faiss index; user
embeddings are computed at request time and searched against it. `ann_recall` measures the index
against exact search over the same vectors.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ebr.data.batching import FeatureGatherer
from ebr.data.csr import Csr
from ebr.data.schema import InteractionData
from ebr.models.artifact import load_artifact
from ebr.models.two_tower import TwoTowerModel
from ebr.serving.embed import embed_rows, tower_encoder
from ebr.serving.index import IndexConfig, ItemIndex
from ebr.serving.index_auto import AUTO_K, AutoIndexConfig, ann_recall, choice_metrics, choose_index
from ebr.serving.score_terms import ScoreColumns

ANN_RECALL_K = AUTO_K
__all__ = ["ANN_RECALL_K", "RetrievalService", "ann_recall"]


class RetrievalService:
    """A trained model served over one corpus.

    Args:
        encode_users: maps user ids to (len, d) float32 embeddings (the user tower at request time).
        pin_embeddings: (len(corpus), d) float32 pin embeddings, row j for corpus[j].
        corpus: sorted pin ids the index holds.
        index: the faiss index configuration; an AutoIndexConfig (`index=auto`) is chosen by
            `choose_index` on sample users' queries before the first search.
        score_columns: the active score terms over `corpus` (none: the model's score alone).
        batch_size: queries searched per index call.
        progress: show progress bars.
    """

    def __init__(
        self,
        encode_users: Callable[[np.ndarray], np.ndarray],
        pin_embeddings: np.ndarray,
        corpus: np.ndarray,
        index: IndexConfig | AutoIndexConfig,
        score_columns: ScoreColumns | None = None,
        batch_size: int = 4096,
        progress: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"serving.batch_size must be positive, got {batch_size}")
        self.corpus = np.asarray(corpus, dtype=np.int64)
        if pin_embeddings.ndim != 2 or len(pin_embeddings) != len(self.corpus):
            raise ValueError(
                f"pin_embeddings must have one row per corpus pin ({len(self.corpus)}), got shape"
                f" {pin_embeddings.shape}"
            )
        self.encode_users = encode_users
        self.batch_size = batch_size
        self.progress = progress
        self.score_columns = score_columns or ScoreColumns(np.zeros(0), np.zeros((len(self.corpus), 0)))
        if self.score_columns.pin_values.shape[0] != len(self.corpus):
            raise ValueError(
                f"score_columns cover {self.score_columns.pin_values.shape[0]} pins, the corpus has"
                f" {len(self.corpus)}"
            )
        self.pin_vectors = self.score_columns.extend_pins(pin_embeddings)
        # wall-clock seconds of serving's steps (serving/...; the last call of each)
        self.timings: dict[str, float] = {}
        # index=auto's choice: the measured operating points (ebr.serving.index_auto), else None
        self.index_choice: dict | None = None
        self.auto = index if isinstance(index, AutoIndexConfig) else None
        self._index: ItemIndex | None = None
        if self.auto is None:
            started = time.perf_counter()
            self._index = ItemIndex(self.pin_vectors, self.corpus, index)
            self.timings["serving/index_build_seconds"] = time.perf_counter() - started

    @property
    def index(self) -> ItemIndex:
        """The served index (with `index=auto`, the one `choose_index` chose)."""
        if self._index is None:
            raise RuntimeError(
                "index=auto: the index is chosen on sample users (RetrievalService.choose_index) before"
                " the first search; this serving path does not choose it"
            )
        return self._index

    def choose_index(
        self, user_ids: np.ndarray, queries_of: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> dict:
        """`index=auto`: measure the candidates on these users' queries and serve the chosen index.

        Serving passes validation users, so the test window never influences the choice; the
        choice's figures join `timings` (`serving/index_choice`, ...), its record `index_choice`.

        Args:
            user_ids: the sample's users (the first `sample_users` are measured).
            queries_of: the query vectors serving sends for users (default `user_vectors`; a
                conditioned model's interest serving passes its own).

        Returns:
            the record: the target, the operating points and the chosen one's position.
        """
        if self.auto is None:
            raise RuntimeError("choose_index: this service's index is not index=auto")
        user_ids = np.asarray(user_ids, dtype=np.int64)[: self.auto.sample_users]
        queries = (queries_of or self.user_vectors)(user_ids)
        started = time.perf_counter()
        self._index, self.index_choice = choose_index(self.pin_vectors, self.corpus, queries, self.auto)
        self.timings["serving/index_build_seconds"] = time.perf_counter() - started
        self.timings.update(choice_metrics(self.index_choice))
        return self.index_choice

    @classmethod
    def from_model(
        cls,
        model: TwoTowerModel,
        features: dict[str, list[str]],
        data: InteractionData,
        corpus: np.ndarray,
        index: IndexConfig,
        score_columns: ScoreColumns | None = None,
        batch_size: int = 4096,
        progress: bool = True,
    ) -> RetrievalService:
        """Embed the corpus with the pin tower and serve users through the user tower.

        Args:
            model: the two-tower model in eval mode (e.g. from `load_artifact`).
            features: {"user_sparse", "user_dense", "pin_sparse", "pin_dense"} feature name lists.
            data: the feature tables the model reads.
            corpus: sorted pin ids the index holds.
            index: the faiss index configuration.
            score_columns: the active score terms over `corpus`.
            batch_size: rows embedded per forward pass, and queries searched per index call.
            progress: show progress bars.
        """
        users = FeatureGatherer(data.users, features["user_sparse"], features["user_dense"], "users")
        pins = FeatureGatherer(data.pins, features["pin_sparse"], features["pin_dense"], "pins")
        desc = "embed corpus" if progress else None
        corpus = np.asarray(corpus, dtype=np.int64)
        started = time.perf_counter()
        pin_embeddings = embed_rows(tower_encoder(model.pin_tower), pins, corpus, batch_size, desc)
        embed_seconds = time.perf_counter() - started

        def encode_users(user_ids: np.ndarray) -> np.ndarray:
            label = "embed users" if progress else None
            return embed_rows(tower_encoder(model.user_tower), users, user_ids, batch_size, label)

        service = cls(encode_users, pin_embeddings, corpus, index, score_columns, batch_size, progress)
        service.timings["serving/corpus_embed_seconds"] = embed_seconds
        # what interest-aware serving encodes conditioned queries with (ebr.serving.conditional)
        service.model, service.user_gatherer = model, users
        return service

    @classmethod
    def from_artifact(
        cls,
        path: str | Path,
        data: InteractionData,
        corpus: np.ndarray,
        index: IndexConfig,
        score_columns: ScoreColumns | None = None,
        batch_size: int = 4096,
        progress: bool = True,
    ) -> RetrievalService:
        """Serve the model saved at `path` (see `from_model` for the arguments).

        Raises:
            ValueError: when the artifact's manifest names another data set or other table sizes
                than `data` (its ids would point at other users and pins).
        """
        model, payload = load_artifact(path)
        manifest = payload.get("info", {})
        expected = {"data_source": data.source, "user_rows": data.users.n_rows, "pin_rows": data.pins.n_rows}
        differs = [
            f"{key}: {manifest[key]!r} (model) vs {value!r} (data)"
            for key, value in expected.items()
            if key in manifest and manifest[key] != value
        ]
        if differs:
            raise ValueError(f"{path}: the model was trained on other data: {'; '.join(differs)}")
        return cls.from_model(
            model, payload["features"], data, corpus, index, score_columns, batch_size, progress
        )

    def user_vectors(self, user_ids: np.ndarray) -> np.ndarray:
        """Request-time query vectors: user embeddings with the score terms' weights appended."""
        started = time.perf_counter()
        embeddings = np.asarray(self.encode_users(np.asarray(user_ids, dtype=np.int64)))
        self.timings["serving/user_embed_seconds"] = time.perf_counter() - started
        if embeddings.shape[0] != len(user_ids):
            raise ValueError(f"encode_users returned {embeddings.shape[0]} rows for {len(user_ids)} users")
        return self.score_columns.extend_users(embeddings)

    def search(
        self, queries: np.ndarray, k: int, exclude: Csr | None = None, allow: Csr | np.ndarray | None = None
    ) -> np.ndarray:
        """Ranked pin ids per query vector, in batches of `batch_size` queries.

        Args:
            queries: (M, d) vectors from `user_vectors`.
            k: results per query.
            exclude: per query, pin ids that must not be returned.
            allow: per query (a Csr) or for all (an array), the only pin ids that may be returned.

        Returns:
            (M, k) int64 pin ids, best first, -1 padded.
        """
        parts = []
        started = time.perf_counter()
        starts = range(0, len(queries), self.batch_size)
        for start in tqdm(starts, desc="retrieval", unit="chunk", disable=not self.progress):
            stop = start + self.batch_size
            excluded = None if exclude is None else exclude.slice(start, stop)
            allowed = allow.slice(start, stop) if isinstance(allow, Csr) else allow
            ids, _ = self.index.search(queries[start:stop], k, excluded, allowed)
            parts.append(ids)
        seconds = time.perf_counter() - started
        self.timings["serving/search_seconds"] = seconds
        self.timings["serving/search_users_per_second"] = len(queries) / max(seconds, 1e-9)
        return np.concatenate(parts) if parts else np.zeros((0, k), dtype=np.int64)

    def ann_recall(self, queries: np.ndarray, n_queries: int = 10_000) -> float:
        """The index's own top-100 recall against exact search over the same vectors.

        Exact search costs a full corpus scan per query, so it runs on `n_queries` evenly spaced
        queries; an exact index scores 1 without a second search. The two searches also time the
        index against flat side by side: chunk by chunk (`batch_size` queries), the index's search
        and then the exact one, in one process on the same queries within seconds of each other,
        no exclusions on either. On a shared machine flat's speed alone swings about 2x from one
        minute to the next (its matrix multiply), which a ratio of two separate runs takes for a
        property of the index. Timings: serving/side_by_side_queries_per_second and
        ..._flat_queries_per_second (all chunks), serving/side_by_side_vs_flat (their ratio) and
        ..._vs_flat_min (the chunk with the lowest ratio).

        Args:
            queries: (M, d) query vectors.
            n_queries: how many of them to measure on.
        """
        if n_queries < 1:
            raise ValueError(f"eval.ann_recall_queries must be positive, got {n_queries}")
        if self.index.config.is_exact:
            return 1.0
        sample = np.unique(
            np.linspace(0, len(queries) - 1, num=min(n_queries, len(queries))).astype(np.int64)
        )
        k = min(ANN_RECALL_K, len(self.corpus))
        flat = ItemIndex(self.pin_vectors, self.corpus, IndexConfig())
        approx, exact, seconds = [], [], []
        for start in range(0, len(sample), self.batch_size):
            chunk = queries[sample[start : start + self.batch_size]]
            started = time.perf_counter()
            approx.append(self.index.search(chunk, k)[0])
            searched = time.perf_counter()
            exact.append(flat.search(chunk, k)[0])
            seconds.append((searched - started, time.perf_counter() - searched))
        index_seconds, flat_seconds = np.maximum(np.array(seconds), 1e-9).T
        self.timings["serving/side_by_side_queries_per_second"] = len(sample) / index_seconds.sum()
        self.timings["serving/side_by_side_flat_queries_per_second"] = len(sample) / flat_seconds.sum()
        self.timings["serving/side_by_side_vs_flat"] = flat_seconds.sum() / index_seconds.sum()
        self.timings["serving/side_by_side_vs_flat_min"] = float(np.min(flat_seconds / index_seconds))
        return ann_recall(np.concatenate(approx), np.concatenate(exact), k)
