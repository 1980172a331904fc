"""The mips_l2 transform (ebr.serving.index_mips): inner-product search of unequal-norm vectors as L2."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from ebr.serving.index import IndexConfig, ItemIndex
from ebr.serving.index_mips import augment_items, inner_products, radius_squared


def _unequal_norms(seed: int, n: int, dim: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x * rng.uniform(0.1, 3.0, (n, 1)).astype(np.float32)


def test_l2_search_of_augmented_vectors_ranks_as_inner_product() -> None:
    items, queries = _unequal_norms(0, 500, 12), _unequal_norms(1, 40, 12)
    augmented = augment_items(items)
    norms = np.linalg.norm(augmented.astype(np.float64), axis=1)
    assert np.allclose(norms, np.sqrt(radius_squared(items)), rtol=1e-5)
    # exact L2 search (numpy) of [q, 0] against the augmented items
    padded = np.hstack([queries, np.zeros((len(queries), 1), np.float32)]).astype(np.float64)
    distances = ((padded[:, None, :] - augmented[None, :, :].astype(np.float64)) ** 2).sum(-1)
    by_l2 = np.argsort(distances, axis=1, kind="stable")[:, :20]
    by_ip = np.argsort(-(queries.astype(np.float64) @ items.T.astype(np.float64)), axis=1, kind="stable")[
        :, :20
    ]
    assert (by_l2 == by_ip).all()
    # and the inner products come back from the distances
    recovered = inner_products(np.take_along_axis(distances, by_l2, 1), queries, radius_squared(items))
    expected = np.take_along_axis(queries.astype(np.float64) @ items.T.astype(np.float64), by_ip, 1)
    assert np.allclose(recovered, expected, atol=1e-3)


@pytest.mark.parametrize("factory", ["Flat", "HNSW32,Flat"])
def test_transformed_index_returns_the_exact_inner_product_top_k(factory: str, tmp_path: Path) -> None:
    items, queries = _unequal_norms(2, 2000, 16), _unequal_norms(3, 30, 16)
    ids = np.arange(len(items), dtype=np.int64) * 7 + 2
    params = {"efSearch": 128} if factory.startswith("HNSW") else {}
    config = IndexConfig(factory=factory, transform="mips_l2", search_params=params)
    index = ItemIndex(items, ids, config)
    assert index.index.metric_type == faiss.METRIC_L2
    found, scores = index.search(queries, 10)
    exact = queries.astype(np.float64) @ items.T.astype(np.float64)
    top = ids[np.argsort(-exact, axis=1, kind="stable")[:, :10]]
    if factory == "Flat":
        assert (found == top).all()
    else:  # HNSW on 2,000 items, efSearch 128: near exact
        assert np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, top, strict=True)]) > 0.95
    # scores are the inner products of the returned items, best first
    rows = (found - 2) // 7
    assert np.allclose(scores, np.take_along_axis(exact, rows, 1), atol=1e-3)
    assert (np.diff(scores, axis=1) <= 1e-5).all()
    index.save(tmp_path / "index")
    loaded = ItemIndex.load(tmp_path / "index")
    assert (loaded.search(queries, 10)[0] == found).all()


def test_allow_lists_on_a_transformed_index_match_exact_search() -> None:
    items, queries = _unequal_norms(4, 3000, 8), _unequal_norms(5, 20, 8)
    ids = np.arange(len(items), dtype=np.int64)
    allowed = ids[::2]
    # exact_filter_max=0: the allowed set gets its own transformed sub-index
    index = ItemIndex(items, ids, IndexConfig(factory="Flat", transform="mips_l2", exact_filter_max=0))
    index.config = IndexConfig(
        factory="IVF8,Flat", transform="mips_l2", exact_filter_max=0, search_params={"nprobe": 8}
    )
    found, scores = index.search(queries, 5, allow=allowed)
    exact = queries.astype(np.float64) @ items[allowed].T.astype(np.float64)
    assert (found == allowed[np.argsort(-exact, axis=1, kind="stable")[:, :5]]).all()
    assert np.allclose(scores, -np.sort(-exact, axis=1)[:, :5], atol=1e-3)


def test_an_unknown_transform_is_refused() -> None:
    with pytest.raises(ValueError, match=r"index\.transform"):
        IndexConfig(transform="mips")
