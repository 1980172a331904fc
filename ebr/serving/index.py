"""The faiss item index that serving searches user embeddings against (exact or HNSW)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np

from ebr.data.csr import first_kept

if TYPE_CHECKING:
    from ebr.data.csr import Csr

INDEX_KINDS = ("flat", "hnsw")
_INDEX_FILE, _IDS_FILE, _CONFIG_FILE = "index.faiss", "item_ids.npy", "config.json"


@dataclass(frozen=True)
class IndexConfig:
    """How the item index is built.

    Args:
        kind: "flat" (exact inner-product search) or "hnsw" (approximate, as in production).
        hnsw_m: HNSW graph degree (neighbours per node).
        ef_construction: HNSW candidate-list size while building.
        ef_search: HNSW candidate-list size while searching (faiss uses at least k).
        popularity_prior: weight w of the served popularity prior, score + w * log(1 + training
            engagements of the pin); 0 serves the model's score alone (see ebr.serving.popularity_prior).
    """

    kind: str = "flat"
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 128
    popularity_prior: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise ValueError(f"IndexConfig.kind must be one of {list(INDEX_KINDS)}, got {self.kind!r}")
        for name in ("hnsw_m", "ef_construction", "ef_search"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"IndexConfig.{name} must be a positive integer, got {value!r}")
        prior = self.popularity_prior
        if (
            isinstance(prior, bool)
            or not isinstance(prior, int | float)
            or not np.isfinite(prior)
            or prior < 0
        ):
            raise ValueError(f"IndexConfig.popularity_prior must be a finite number >= 0, got {prior!r}")
        if self.hnsw_m < 2:
            raise ValueError(f"IndexConfig.hnsw_m must be at least 2, got {self.hnsw_m}")

    @property
    def is_exact(self) -> bool:
        return self.kind == "flat"


class ItemIndex:
    """Inner-product search over item embeddings, returning item ids.

    Embeddings are L2-normalised by the model, so inner product equals cosine similarity.

    Args:
        embeddings: (N, d) float item embeddings.
        item_ids: (N,) distinct int64 ids; row i of `embeddings` is item item_ids[i].
        config: index kind and HNSW parameters.
    """

    def __init__(self, embeddings: np.ndarray, item_ids: np.ndarray, config: IndexConfig) -> None:
        embeddings = _as_matrix(embeddings, "embeddings")
        item_ids = np.asarray(item_ids)
        if item_ids.ndim != 1 or item_ids.dtype.kind not in "iu":
            raise ValueError(f"item_ids must be a 1-D integer array, got {item_ids.dtype} {item_ids.shape}")
        if len(item_ids) != len(embeddings):
            raise ValueError(
                f"item_ids has {len(item_ids)} entries but embeddings has {len(embeddings)} rows"
            )
        if len(item_ids) == 0:
            raise ValueError("embeddings: the index needs at least one item")
        if len(np.unique(item_ids)) != len(item_ids):
            raise ValueError("item_ids must be distinct")
        if item_ids.min() < 0:
            raise ValueError("item_ids must be non-negative (-1 marks padding in search results)")
        self.config = config
        self.item_ids = item_ids.astype(np.int64)
        self.index = _new_index(embeddings.shape[1], config)
        self.index.add(embeddings)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def __len__(self) -> int:
        return len(self.item_ids)

    def search(
        self, queries: np.ndarray, k: int, exclude: Csr | None = None, allow=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k highest-scoring items per query.

        Args:
            queries: (M, d) query embeddings.
            k: results per query.
            exclude: per query, item ids that must not be returned (one Csr row per query).

        Returns:
            (item ids (M, k) int64, scores (M, k) float32); missing results are id -1, score -inf.
        """
        queries = _as_matrix(queries, "queries")
        if queries.shape[1] != self.dim:
            raise ValueError(f"queries have dimension {queries.shape[1]}, the index has {self.dim}")
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if exclude is not None and exclude.n_rows != len(queries):
            raise ValueError(f"exclude has {exclude.n_rows} rows for {len(queries)} queries")
        extra = int(exclude.lengths().max()) if exclude is not None and exclude.n_rows else 0
        # over-fetch by the largest exclusion list so every query keeps k results after filtering
        fetch = min(k + extra, len(self))
        scores, positions = self.index.search(queries, fetch)
        ids = np.where(positions >= 0, self.item_ids[np.maximum(positions, 0)], -1)
        keep = ids >= 0
        if exclude is not None:
            keep &= ~exclude.contains(ids)
        columns, valid = first_kept(keep, k)
        out_ids = np.where(valid, np.take_along_axis(ids, np.minimum(columns, fetch - 1), axis=1), -1)
        out_scores = np.where(
            valid, np.take_along_axis(scores, np.minimum(columns, fetch - 1), axis=1), -np.inf
        )
        return out_ids.astype(np.int64), out_scores.astype(np.float32)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to directory `path` (created if needed): faiss index, ids and config.

        Args:
            path: target directory.
        """
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(directory / _INDEX_FILE))
        np.save(directory / _IDS_FILE, self.item_ids)
        (directory / _CONFIG_FILE).write_text(json.dumps(asdict(self.config)))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ItemIndex:
        """Read an index written by `save`.

        Args:
            path: the directory given to `save`.
        """
        directory = Path(path)
        for name in (_INDEX_FILE, _IDS_FILE, _CONFIG_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory / name}: missing (not an ItemIndex directory?)")
        config = IndexConfig(**json.loads((directory / _CONFIG_FILE).read_text()))
        item_ids = np.load(directory / _IDS_FILE)
        index = faiss.read_index(str(directory / _INDEX_FILE))
        if index.ntotal != len(item_ids):
            raise ValueError(
                f"{directory / _INDEX_FILE} holds {index.ntotal} vectors but {directory / _IDS_FILE}"
                f" has {len(item_ids)} ids"
            )
        self = cls.__new__(cls)
        self.config, self.item_ids, self.index = config, item_ids.astype(np.int64), index
        if config.kind == "hnsw":
            index.hnsw.efSearch = config.ef_search
        return self


def exact_search(
    embeddings: np.ndarray, item_ids: np.ndarray, queries: np.ndarray, k: int, exclude: Csr | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top k (the reference ANN recall is measured against).

    Args:
        embeddings: (N, d) item embeddings.
        item_ids: (N,) item ids.
        queries: (M, d) query embeddings.
        k: results per query.
        exclude: per query, item ids that must not be returned.

    Returns:
        (item ids (M, k), scores (M, k)) as in `ItemIndex.search`.
    """
    return ItemIndex(embeddings, item_ids, IndexConfig(kind="flat")).search(queries, k, exclude)


def _new_index(dim: int, config: IndexConfig) -> faiss.Index:
    if config.kind == "flat":
        return faiss.IndexFlatIP(dim)
    index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = config.ef_construction
    index.hnsw.efSearch = config.ef_search
    return index


def _as_matrix(array: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2 or array.shape[1] == 0 or array.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be a 2-D numeric (rows, dim) array, got {array.dtype} {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return np.ascontiguousarray(array, dtype=np.float32)
