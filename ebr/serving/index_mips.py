"""Maximum inner-product search as L2 search: the `mips_l2` transform of IndexConfig.

Inner product is not a metric: over vectors of unequal norms a graph index (HNSW) built for it
links each item to the items of largest norm, and IVF's centroids by inner product favour long
vectors, so both lose recall where a score term's column (the popularity prior) spreads the norms.
The transform (Bachrach et al. 2014) appends one coordinate: items become
x' = [x, sqrt(R^2 - |x|^2)] with R the largest item norm, so every item has norm R, and queries
q' = [q, 0]. Then |q' - x'|^2 = |q|^2 + R^2 - 2 <q, x>: for one query the L2 ranking is the
inner-product ranking, exactly, and the inner product is recovered from the distance.

The faiss index is an `IndexPreTransform` that pads queries with the zero coordinate
(`RemapDimensionsTransform`), over an L2 index of dimension d + 1 that holds the augmented items
(added to the inner index directly, since the pre-transform would pad items with 0 too). Searches
and saved files take d-dimensional queries as before; `inner_products` turns the distances back.
"""

from __future__ import annotations

import faiss
import numpy as np

from ebr.serving.index_config import IndexConfig, fill_index, new_index, set_search_params


def radius_squared(vectors: np.ndarray) -> float:
    """R^2, the largest squared norm of the item vectors (float32 arithmetic, as indexed).

    Args:
        vectors: (n, d) float32 item vectors.
    """
    return float(np.einsum("ij,ij->i", vectors, vectors).max()) if len(vectors) else 0.0


def augment_items(vectors: np.ndarray) -> np.ndarray:
    """[x, sqrt(R^2 - |x|^2)] per row (float32, C-contiguous).

    Args:
        vectors: (n, d) float32 item vectors.
    """
    norms = np.einsum("ij,ij->i", vectors, vectors)
    extra = np.sqrt(np.maximum(radius_squared(vectors) - norms, 0.0)).astype(np.float32)
    return np.ascontiguousarray(np.hstack([vectors, extra[:, None]]), dtype=np.float32)


def build_mips_index(vectors: np.ndarray, config: IndexConfig) -> faiss.Index:
    """The L2 index of the augmented items behind a query-padding pre-transform.

    Args:
        vectors: (n, d) float32 item vectors.
        config: the index config (its factory, sized for n vectors of dimension d + 1).
    """
    n, dim = vectors.shape
    inner = new_index(config, n, dim + 1, metric=faiss.METRIC_L2)
    fill_index(inner, augment_items(vectors), config)
    # not uniform: the d query coordinates map to the first d, the last one is 0
    index = faiss.IndexPreTransform(faiss.RemapDimensionsTransform(dim, dim + 1, False), inner)
    index.ntotal = inner.ntotal
    set_search_params(index, config)
    return index


def is_mips(index: faiss.Index) -> bool:
    """Whether `index` is a transformed one (an L2 IndexPreTransform from build_mips_index).

    Args:
        index: a faiss index.
    """
    return isinstance(index, faiss.IndexPreTransform) and index.metric_type == faiss.METRIC_L2


def inner_products(distances: np.ndarray, queries: np.ndarray, radius2: float) -> np.ndarray:
    """Inner products from the transformed index's squared L2 distances: (|q|^2 + R^2 - dist) / 2.

    Args:
        distances: (M, k) squared distances (missing results keep their sentinel as -inf).
        queries: (M, d) the queries searched.
        radius2: R^2 of the indexed items.
    """
    norms = np.einsum("ij,ij->i", queries, queries)[:, None]
    scores = ((norms + radius2 - distances) / 2).astype(np.float32)
    # faiss marks missing results with distance +inf (L2) or very large values: keep them last
    return np.where(np.isfinite(distances) & (distances < np.finfo(np.float32).max / 2), scores, -np.inf)
