"""The faiss item index that serving searches user embeddings against, with exclusion and allow lists.

How the index is built (factory strings, parameters, corpus sizing): ebr.serving.index_config.

Allow lists (filtered search, e.g. one interest's pins for conditional retrieval) are searched in a
sub-index over the allowed items, one per distinct allowed set: a flat (exact) one up to
`exact_filter_max` allowed items (50,000 by default), above that one built with the index's own
config and cached (SUB_INDEX_CACHE_SIZE sets). faiss ID selectors on the full index
(`SearchParameters(sel=IDSelectorBitmap(...))`) were measured against sub-indexes and lost at every
setting: with a selector a flat index still scans the whole corpus, and HNSW explores the full
graph while keeping only allowed nodes, so at a few percent selectivity it needs a candidate list
of thousands (efSearch) to fill k. Measured by `python scripts/index_filter_benchmark.py --groups
32,4`: 100,000 random unit vectors of dimension 64, 1,000 queries each restricted to one random
group, top 100, recall against the exact top 100 within the group, one faiss thread, on a shared
2-core machine (rows vary up to 2x between runs; the full HNSW index took 140 s to build):

                                            32 groups of ~3,100      4 groups of ~25,000
    method                                  queries/s  recall@100    queries/s  recall@100
    selector, flat                              1,600       1.000          750       1.000
    selector, HNSW efSearch=128                 1,100       0.445        1,150       0.681
    selector, HNSW efSearch=1024                  180       0.963          110       0.997
    selector, HNSW efSearch=4096                   25       1.000           30       1.000
    sub-index, flat (= exact)                   4,800       1.000        1,600       1.000
    sub-index, HNSW (built in 27 s / 95 s)      2,600       0.996        3,100       0.935
    ItemIndex.search(allow=Csr), flat           5,100       1.000        3,150       1.000
    ItemIndex.search(allow=Csr), hnsw           3,500       1.000        3,150       1.000

At recall 1 the exact sub-index is 2-3x faster than the flat selector and 50-200x faster than an
HNSW selector; an HNSW sub-index only pays off for allowed sets far larger than these (it costs a
build, and at 25,000 items it already loses recall), hence the exact limit.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path

import faiss
import numpy as np

from ebr.data.csr import Csr
from ebr.serving.index_config import METRICS, IndexConfig, build_index, set_search_params
from ebr.serving.index_exclude import top_k_excluding
from ebr.serving.index_mips import inner_products, is_mips, radius_squared

__all__ = ["IndexConfig", "ItemIndex", "exact_search"]

_INDEX_FILE, _IDS_FILE, _CONFIG_FILE, _VECTORS_FILE = (
    "index.faiss",
    "item_ids.npy",
    "config.json",
    "vectors.npy",
)
# sub-indexes of large allowed sets kept for reuse (e.g. one per interest across query chunks)
SUB_INDEX_CACHE_SIZE = 64


class ItemIndex:
    """Inner-product search over item embeddings, returning item ids.

    Embeddings are L2-normalised by the model, so inner product equals cosine similarity. The
    index keeps its (float32) vectors for exact and sub-index searches under allow lists.

    Args:
        embeddings: (N, d) float item embeddings.
        item_ids: (N,) distinct int64 ids; row i of `embeddings` is item item_ids[i].
        config: the faiss factory string and parameters.
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
        if not isinstance(config, IndexConfig):
            raise TypeError(f"config must be an IndexConfig, got {type(config).__name__}")
        self._setup(config, item_ids.astype(np.int64), embeddings, build_index(embeddings, config))

    def _setup(
        self, config: IndexConfig, item_ids: np.ndarray, vectors: np.ndarray, index: faiss.Index
    ) -> None:
        self.config, self.item_ids, self.vectors, self.index = config, item_ids, vectors, index
        self._id_order = np.argsort(item_ids, kind="stable")
        self._sorted_ids = item_ids[self._id_order]
        self._sub_indexes: OrderedDict[bytes, faiss.Index] = OrderedDict()
        # R^2 of the mips_l2 transform over the whole corpus (sub-indexes compute their own)
        self._radius2 = radius_squared(vectors)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def factory(self) -> str:
        """The factory string this index was built with (the config's, sized to the corpus)."""
        return self.config.sized_factory(len(self), self.dim)

    def __len__(self) -> int:
        return len(self.item_ids)

    def search(
        self, queries: np.ndarray, k: int, exclude: Csr | None = None, allow: Csr | np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k highest-scoring items per query.

        Args:
            queries: (M, d) query embeddings.
            k: results per query.
            exclude: per query, item ids that must not be returned (one Csr row per query).
            allow: item ids that may be returned: a Csr with one row per query, or one 1-D array for
                every query; ids not in the index are ignored. None allows every item.

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
        if allow is not None:
            return self._search_allowed(queries, int(k), exclude, self._allow_groups(allow, len(queries)))

        def search(rows: np.ndarray, fetch: int) -> tuple[np.ndarray, np.ndarray]:
            scores, positions = self._faiss_search(self.index, queries[rows], fetch)
            return self._ids(positions), scores

        rows = np.arange(len(queries))
        return top_k_excluding(search, rows, int(k), len(self), exclude, not self.config.is_exact)

    def _ids(self, positions: np.ndarray, subset: np.ndarray | None = None) -> np.ndarray:
        """Item ids of faiss results: `positions` index `subset` (corpus positions; None: the corpus)."""
        corpus_positions = np.maximum(positions, 0) if subset is None else subset[np.maximum(positions, 0)]
        return np.where(positions >= 0, self.item_ids[corpus_positions], -1)

    def _allow_groups(self, allow: Csr | np.ndarray, n_queries: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """(query rows, sorted corpus positions of the allowed items), one pair per distinct allowed set."""
        if isinstance(allow, Csr):
            if allow.n_rows != n_queries:
                raise ValueError(f"allow has {allow.n_rows} rows for {n_queries} queries")
            rows_of: dict[bytes, list[int]] = {}
            # Csr rows are sorted and distinct, so equal sets have equal bytes
            for row in range(n_queries):
                key = allow.values[allow.offsets[row] : allow.offsets[row + 1]].tobytes()
                rows_of.setdefault(key, []).append(row)
            return [
                (np.asarray(rows, dtype=np.int64), self._positions(np.frombuffer(key, dtype=np.int64)))
                for key, rows in rows_of.items()
            ]
        ids = np.asarray(allow)
        if ids.ndim != 1 or (ids.size and ids.dtype.kind not in "iu"):
            raise ValueError(
                f"allow must be a Csr or a 1-D integer array of item ids, got {ids.dtype} {ids.shape}"
            )
        return [(np.arange(n_queries), self._positions(ids.astype(np.int64)))]

    def _positions(self, ids: np.ndarray) -> np.ndarray:
        """Sorted corpus positions of the given item ids; ids not in the index are dropped."""
        rank = np.minimum(np.searchsorted(self._sorted_ids, ids), len(self._sorted_ids) - 1)
        known = self._sorted_ids[rank] == ids
        return np.unique(self._id_order[rank[known]])

    def _search_allowed(
        self,
        queries: np.ndarray,
        k: int,
        exclude: Csr | None,
        groups: list[tuple[np.ndarray, np.ndarray]],
    ) -> tuple[np.ndarray, np.ndarray]:
        out_ids = np.full((len(queries), k), -1, dtype=np.int64)
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        for group_rows, subset in groups:
            if len(subset) == 0:
                continue
            sub_index = self._sub_index(subset)
            exact = isinstance(sub_index, faiss.IndexFlat)

            def search(
                rows: np.ndarray,
                fetch: int,
                sub_index: faiss.Index = sub_index,
                subset: np.ndarray = subset,
                exact: bool = exact,
            ) -> tuple[np.ndarray, np.ndarray]:
                scores, positions = self._faiss_search(sub_index, queries[rows], fetch, subset)
                # an approximate sub-index may return fewer results than the allowed set holds (its
                # probed IVF lists hold fewer than k items, an HNSW search ends early): redo those
                # exactly
                short = (positions < 0).any(axis=1)
                if short.any() and not exact:
                    scores[short], positions[short] = self._flat(subset).search(queries[rows[short]], fetch)
                return self._ids(positions, subset), scores

            found = top_k_excluding(search, group_rows, k, len(subset), exclude, not exact)
            out_ids[group_rows], out_scores[group_rows] = found
        return out_ids, out_scores

    def _faiss_search(
        self, index: faiss.Index, queries: np.ndarray, fetch: int, subset: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """faiss's search of `index` (over `subset`'s vectors; None: the corpus), scores as inner products."""
        scores, positions = index.search(queries, fetch)
        if is_mips(index):
            whole = subset is None or len(subset) == len(self)
            radius2 = self._radius2 if whole else radius_squared(self.vectors[subset])
            scores = inner_products(scores, queries, radius2)
        return scores, positions

    def _flat(self, subset: np.ndarray) -> faiss.Index:
        flat = faiss.IndexFlat(self.dim, METRICS[self.config.metric])
        flat.add(self.vectors[subset])
        return flat

    def _sub_index(self, subset: np.ndarray) -> faiss.Index:
        """The index searched for an allowed set: exact when small, else built with the config, cached."""
        if len(subset) == len(self):
            return self.index
        if self.config.is_exact or len(subset) <= self.config.exact_filter_max:
            return self._flat(subset)
        key = hashlib.blake2b(subset.tobytes(), digest_size=16).digest()
        if key in self._sub_indexes:
            self._sub_indexes.move_to_end(key)
            return self._sub_indexes[key]
        sub_index = build_index(np.ascontiguousarray(self.vectors[subset]), self.config)
        self._sub_indexes[key] = sub_index
        if len(self._sub_indexes) > SUB_INDEX_CACHE_SIZE:
            self._sub_indexes.popitem(last=False)
        return sub_index

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to directory `path` (created if needed): faiss index, ids, vectors and config.

        Args:
            path: target directory.
        """
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(directory / _INDEX_FILE))
        np.save(directory / _IDS_FILE, self.item_ids)
        np.save(directory / _VECTORS_FILE, self.vectors)
        (directory / _CONFIG_FILE).write_text(json.dumps(asdict(self.config)))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ItemIndex:
        """Read an index written by `save`; the config's search parameters are applied again.

        Args:
            path: the directory given to `save`.
        """
        directory = Path(path)
        for name in (_INDEX_FILE, _IDS_FILE, _VECTORS_FILE, _CONFIG_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory / name}: missing (not an ItemIndex directory?)")
        try:
            config = IndexConfig(**json.loads((directory / _CONFIG_FILE).read_text()))
        except TypeError as error:
            raise ValueError(f"{directory / _CONFIG_FILE}: not an index config: {error}") from error
        item_ids = np.load(directory / _IDS_FILE)
        vectors = np.load(directory / _VECTORS_FILE)
        index = faiss.read_index(str(directory / _INDEX_FILE))
        if index.ntotal != len(item_ids) or vectors.shape != (len(item_ids), index.d):
            raise ValueError(
                f"{directory}: {_INDEX_FILE} holds {index.ntotal} vectors of dimension {index.d}, but"
                f" {_IDS_FILE} has {len(item_ids)} ids and {_VECTORS_FILE} shape {vectors.shape}"
            )
        set_search_params(index, config)
        self = cls.__new__(cls)
        self._setup(
            config, item_ids.astype(np.int64), _as_matrix(vectors, str(directory / _VECTORS_FILE)), index
        )
        return self


def exact_search(
    embeddings: np.ndarray,
    item_ids: np.ndarray,
    queries: np.ndarray,
    k: int,
    exclude: Csr | None = None,
    allow: Csr | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top k (the reference ANN recall is measured against).

    Args:
        embeddings: (N, d) item embeddings.
        item_ids: (N,) item ids.
        queries: (M, d) query embeddings.
        k: results per query.
        exclude: per query, item ids that must not be returned.
        allow: item ids that may be returned (see `ItemIndex.search`).

    Returns:
        (item ids (M, k), scores (M, k)) as in `ItemIndex.search`.
    """
    return ItemIndex(embeddings, item_ids, IndexConfig()).search(queries, k, exclude, allow)


def _as_matrix(array: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2 or array.shape[1] == 0 or array.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be a 2-D numeric (rows, dim) array, got {array.dtype} {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return np.ascontiguousarray(array, dtype=np.float32)


def selector_parameters(
    index: faiss.Index, selector: faiss.IDSelector, nprobe: int | None = None
) -> faiss.SearchParameters:
    """Search parameters that restrict a search of `index` to `selector`'s ids, with the index's
    own search settings (HNSW efSearch, IVF nprobe). An exact re-ranking wrapper (`...,RFlat`)
    refuses plain IVF parameters: it gets its own, carrying its base index's, where the candidates
    are found.

    Args:
        index: the faiss index searched.
        selector: the ids the search may return.
        nprobe: an IVF index's lists probed (None: the index's own setting).
    """
    concrete = faiss.downcast_index(index)
    if isinstance(concrete, faiss.IndexRefine):
        base = selector_parameters(concrete.base_index, selector, nprobe)
        params = faiss.IndexRefineSearchParameters(
            sel=selector, k_factor=float(concrete.k_factor), base_index_params=base
        )
        params.base = base  # the C++ struct holds a bare pointer: keep the Python object alive
        return params
    if hasattr(concrete, "hnsw"):
        return faiss.SearchParametersHNSW(sel=selector, efSearch=int(concrete.hnsw.efSearch))
    try:
        ivf = faiss.extract_index_ivf(concrete)
    except RuntimeError:
        return faiss.SearchParameters(sel=selector)
    return faiss.SearchParametersIVF(sel=selector, nprobe=int(nprobe or ivf.nprobe))
