"""The faiss item index: exact, HNSW and IVF-PQ search, exclusion, persistence, config checks."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ebr.data.csr import Csr
from ebr.serving.index import IndexConfig, ItemIndex, exact_search
from ebr.serving.index_auto import AutoIndexConfig
from ebr.serving.service import ann_recall
from tests.serving.index_vectors import HNSW, IVFPQ, _brute_top, _clustered, _csr, _normalised, _overlap

CONF = Path(__file__).resolve().parents[2] / "conf" / "index"


def test_flat_search_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    items, queries = _normalised(rng, 300, 8), _normalised(rng, 25, 8)
    ids = rng.permutation(10_000)[:300]
    found, scores = ItemIndex(items, ids, IndexConfig()).search(queries, 15)
    assert found.dtype == np.int64
    assert scores.dtype == np.float32
    assert found.tolist() == _brute_top(items, ids, queries, 15)
    position = {int(i): j for j, i in enumerate(ids)}
    expected_scores = np.einsum("md,mkd->mk", queries, items[np.vectorize(position.get)(found)])
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-6)
    exact_ids, _ = exact_search(items, ids, queries, 15)
    np.testing.assert_array_equal(exact_ids, found)


@pytest.mark.parametrize(
    ("config", "reference"),
    [
        (IndexConfig(), lambda d: faiss.IndexFlatIP(d)),
        (HNSW, lambda d: faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)),
    ],
    ids=["flat", "hnsw"],
)
def test_presets_equal_the_hand_built_faiss_index(config: IndexConfig, reference) -> None:
    """The factory path gives exactly what the hand-written IndexFlatIP / IndexHNSWFlat code gave."""
    rng = np.random.default_rng(11)
    items, queries = _normalised(rng, 3000, 32), _normalised(rng, 200, 32)
    expected = reference(32)
    if isinstance(expected, faiss.IndexHNSWFlat):
        expected.hnsw.efConstruction = 200
        expected.hnsw.efSearch = 128
    expected.add(items)
    expected_scores, expected_positions = expected.search(queries, 50)
    found, scores = ItemIndex(items, np.arange(3000) + 5, config).search(queries, 50)
    np.testing.assert_array_equal(found, expected_positions + 5)
    np.testing.assert_array_equal(scores, expected_scores)


def test_exclusion_removes_items_and_keeps_k() -> None:
    rng = np.random.default_rng(1)
    items, queries = _normalised(rng, 200, 6), _normalised(rng, 30, 6)
    ids = np.arange(200) * 3 + 7
    index = ItemIndex(items, ids, IndexConfig())
    # ban each query's own top items (the ones most at risk), a random extra set, and ids not indexed
    top = _brute_top(items, ids, queries, 40)
    banned = [set(top[q][: q % 25]) | set(rng.choice(ids, q % 7).tolist()) | {1, 2} for q in range(30)]
    found, scores = index.search(queries, 20, _csr(banned))
    assert (found >= 0).all(), "every query still gets k results"
    for q in range(30):
        assert not set(found[q].tolist()) & banned[q]
    assert found.tolist() == _brute_top(items, ids, queries, 20, banned)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


def test_a_users_results_do_not_depend_on_the_batch() -> None:
    """A query over-fetches by its own exclusions, not the batch's longest list, so a re-ranking
    index (whose candidates grow with the fetch) answers a user the same alone or beside a heavy one."""
    rng = np.random.default_rng(4)
    items, queries = _clustered(rng, 4000, 16), _normalised(rng, 12, 16)
    ids = np.arange(4000) + 3
    config = IndexConfig(factory="IVF32,PQ8x4fs,RFlat", search_params={"nprobe": 4, "k_factor_rf": 2})
    index = ItemIndex(items, ids, config)
    banned = [set(rng.choice(ids, 400 if q == 0 else q, replace=False).tolist()) for q in range(12)]
    together, _ = index.search(queries, 30, _csr(banned))
    for q in range(12):
        alone, _ = index.search(queries[q : q + 1], 30, _csr(banned[q : q + 1]))
        np.testing.assert_array_equal(together[q], alone[0])
        assert not set(together[q].tolist()) & banned[q]
    assert (together >= 0).all()


def test_a_query_its_exclusions_leave_short_is_searched_again() -> None:
    """An approximate index first fetches k + k/4 for every query; a query whose exclusions take
    more than that leaves is searched again fetching k plus its exclusions (rounded up to k/4), and
    one they leave enough keeps its first answer: both equal the unfiltered search at that fetch,
    filtered."""
    rng = np.random.default_rng(6)
    items, queries = _clustered(rng, 4000, 16), _normalised(rng, 2, 16)
    ids = np.arange(4000) + 3
    config = IndexConfig(factory="IVF32,PQ8x4fs,RFlat", search_params={"nprobe": 4, "k_factor_rf": 2})
    index = ItemIndex(items, ids, config)
    k, step = 30, 8
    top, _ = index.search(queries, 100)
    # query 0 loses its whole first fetch (38) and two more; query 1 loses 3 of its top 30
    banned = [set(top[0, :40].tolist()), set(top[1, [0, 5, 9]].tolist())]
    found, _ = index.search(queries, k, _csr(banned))
    for row, fetch in ((0, k + 40), (1, k + step)):
        fetched, _ = index.search(queries[row : row + 1], fetch)
        expected = [i for i in fetched[0].tolist() if i not in banned[row]][:k]
        assert found[row].tolist() == expected
    assert not set(found[0].tolist()) & banned[0]


def test_exclusion_pads_when_the_corpus_runs_out() -> None:
    rng = np.random.default_rng(2)
    items = _normalised(rng, 20, 4)
    exclude = Csr.from_pairs(np.zeros(10, dtype=np.int64), np.arange(10), 1)
    found, scores = ItemIndex(items, np.arange(20), IndexConfig()).search(items[:1], 15, exclude)
    assert sorted(found[0, :10].tolist()) == list(range(10, 20))
    assert found[0, 10:].tolist() == [-1] * 5
    assert np.isneginf(scores[0, 10:]).all()


def test_hnsw_recall_against_exact_search() -> None:
    rng = np.random.default_rng(3)
    items, queries = _normalised(rng, 2000, 16), _normalised(rng, 100, 16)
    ids = np.arange(2000) + 100
    config = IndexConfig(
        factory="HNSW16,Flat", build_params={"hnsw": {"efConstruction": 100}}, search_params={"efSearch": 128}
    )
    approx, _ = ItemIndex(items, ids, config).search(queries, 100)
    exact, _ = exact_search(items, ids, queries, 100)
    overlap = np.mean([len(set(a.tolist()) & set(e.tolist())) / 100 for a, e in zip(approx, exact)])
    assert overlap > 0.9
    assert ann_recall(approx, exact, 100) == pytest.approx(overlap)


@pytest.mark.parametrize("n", [300, 1000, 20_000])
def test_ivfpq_is_sized_to_the_corpus_and_trains_without_warnings(n: int, capfd) -> None:
    rng = np.random.default_rng(n)
    items, queries = _clustered(rng, n, 64), _clustered(rng, 100, 64)
    capfd.readouterr()
    index = ItemIndex(items, np.arange(n) * 2, IVFPQ)
    # faiss warns on stderr when k-means gets fewer than 39 points per centroid
    assert "WARNING" not in capfd.readouterr().err
    assert not index.config.is_exact
    found, _ = index.search(queries, 10)
    assert (found >= 0).all()
    assert all(len(set(row.tolist())) == 10 for row in found)
    assert np.isin(found, np.arange(n) * 2).all()
    overlap = _overlap(found, _brute_top(items, np.arange(n) * 2, queries, 10))
    # PQ is lossy; with the full 8 bits on 20k points most of the exact top 10 is found
    assert overlap > (0.6 if n >= 20_000 else 0.3)


def test_ivfpq_builds_for_the_popularity_prior_dimension() -> None:
    rng = np.random.default_rng(7)
    items = _clustered(rng, 700, 65)
    index = ItemIndex(items, np.arange(700), IVFPQ)
    assert index.factory == IVFPQ.sized_factory(700, 65)
    assert index.dim == 65
    found, _ = index.search(items[:5], 10)
    assert (found >= 0).all()


@pytest.mark.parametrize(("n", "dim"), [(300, 65), (5_000, 64), (5_000, 7)])
def test_fast_scan_keeps_4_bit_codes_and_builds_at_any_dimension(n: int, dim: int) -> None:
    """Fast-scan PQ has SIMD tables for 4-bit codes only: sizing fits m to the dimension (the
    popularity prior's extra column) and the lists to the corpus, never the bits."""
    config = IndexConfig(factory="IVF4096,PQ64x4fs,RFlat", search_params={"nprobe": 8, "k_factor_rf": 8})
    sized = config.sized_factory(n, dim).split(",")
    m = int(sized[1].removeprefix("PQ").removesuffix("x4fs"))
    assert sized[1].endswith("x4fs")
    assert dim % m == 0
    assert m == max(v for v in range(1, 65) if dim % v == 0)
    assert int(sized[0].removeprefix("IVF")) == min(4096, max(1, n // 39))
    items = _clustered(np.random.default_rng(3), n, dim)
    index = ItemIndex(items, np.arange(n), config)
    found, _ = index.search(items[:20], 10)
    # the exact re-ranking puts each item, a query here, first in its own results
    assert (found[:, 0] == np.arange(20)).mean() >= 0.9


@pytest.mark.parametrize("n", [1, 20, 38, 39, 300, 700, 1000, 9983, 9984, 20_000, 39_936, 1_000_000])
@pytest.mark.parametrize("dim", [64, 65, 7])
def test_sizing_rule_keeps_every_centroid_trained(n: int, dim: int) -> None:
    """The sized numbers are the largest that satisfy faiss's constraints, never above the config's."""
    sized = IVFPQ.sized_factory(n, dim).split(",")
    nlist = int(sized[0].removeprefix("IVF"))
    m, _, bits = sized[1].removeprefix("PQ").partition("x")
    m, nbits = int(m), int(bits or 8)  # faiss's PQ default is 8 bits
    assert 1 <= nlist <= 1024
    assert nlist == 1 or n >= 39 * nlist
    assert nlist == 1024 or n < 39 * (nlist + 1) or nlist == 1
    assert dim % m == 0
    assert 1 <= m <= 16
    assert not [v for v in range(m + 1, 17) if dim % v == 0], "m is the largest divisor of d up to 16"
    assert 1 <= nbits <= 8
    assert nbits == 1 or n >= 39 * 2**nbits
    assert nbits == 8 or n < 39 * 2 ** (nbits + 1)
    assert IndexConfig(factory="HNSW32,Flat").sized_factory(n, dim) == "HNSW32,Flat"
    assert IndexConfig(factory="IVF1024,PQ16", size_to_corpus=False).sized_factory(n, dim) == "IVF1024,PQ16"


@pytest.mark.parametrize("config", [IndexConfig(), HNSW, IVFPQ], ids=["flat", "hnsw", "ivfpq"])
def test_save_load_round_trip(tmp_path: Path, config: IndexConfig) -> None:
    rng = np.random.default_rng(4)
    items, queries = _clustered(rng, 500, 16), _normalised(rng, 10, 16)
    index = ItemIndex(items, np.arange(500) * 2, config)
    allow = np.arange(0, 1000, 6)
    before, before_allowed = index.search(queries, 12), index.search(queries, 12, allow=allow)
    index.save(tmp_path / "index")
    loaded = ItemIndex.load(tmp_path / "index")
    assert loaded.config == config
    assert loaded.config.is_exact == config.is_exact
    for expected, got in (
        (before, loaded.search(queries, 12)),
        (before_allowed, loaded.search(queries, 12, allow=allow)),
    ):
        np.testing.assert_array_equal(expected[0], got[0])
        np.testing.assert_array_equal(expected[1], got[1])


def test_load_applies_the_search_parameters(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    ItemIndex(_normalised(rng, 100, 8), np.arange(100), HNSW).save(tmp_path)
    record = json.loads((tmp_path / "config.json").read_text())
    record["search_params"] = {"efSearch": 77}
    (tmp_path / "config.json").write_text(json.dumps(record))
    loaded = ItemIndex.load(tmp_path)
    assert faiss.downcast_index(loaded.index).hnsw.efSearch == 77


def test_load_names_the_missing_file_and_a_foreign_config(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"index\.faiss"):
        ItemIndex.load(tmp_path)
    ItemIndex(np.eye(4, dtype=np.float32), np.arange(4), IndexConfig()).save(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"kind": "flat"}))
    with pytest.raises(ValueError, match=r"config\.json: not an index config"):
        ItemIndex.load(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"factory": "IVFx,PQ8"}, r"index\.factory 'IVFx,PQ8': faiss cannot build it: could not parse"),
        ({"factory": ""}, r"index\.factory must be a non-empty"),
        ({"metric": "l2"}, r"index\.metric must be one of \['inner_product'\]"),
        (
            {"build_params": {"hnsw": {"efConstruction": 9}}},
            r"index\.build_params\.hnsw\.efConstruction: IndexFlat has no attribute 'hnsw'",
        ),
        (
            {"factory": "HNSW32,Flat", "build_params": {"hnsw": {"efConstructoin": 9}}},
            r"index\.build_params\.hnsw\.efConstructoin: HNSW has no attribute",
        ),
        (
            {"factory": "HNSW32,Flat", "build_params": {"hnsw": {"efConstruction": 2.5}}},
            r"efConstruction: cannot set",
        ),
        ({"build_params": [1]}, r"index\.build_params must be a mapping"),
        ({"build_params": {"x": "big"}}, r"index\.build_params\.x must be a finite number"),
        ({"search_params": {"efSearch": 128}}, r"index\.search_params\.efSearch: not a search parameter of"),
        (
            {"factory": "HNSW32,Flat", "search_params": {"efSearch": True}},
            r"index\.search_params\.efSearch must be",
        ),
        ({"search_params": {"nprobe": float("nan")}}, r"index\.search_params\.nprobe must be a finite"),
        ({"size_to_corpus": "yes"}, r"index\.size_to_corpus must be true or false"),
        ({"exact_filter_max": -1}, r"index\.exact_filter_max must be an integer >= 0"),
    ],
)
def test_bad_configs_fail_at_construction_naming_the_field(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IndexConfig(**kwargs)


def test_the_yaml_options_instantiate() -> None:
    presets = {path.stem: instantiate(OmegaConf.load(path)) for path in sorted(CONF.glob("*.yaml"))}
    # index=auto chooses among candidates (tests/serving/test_index_auto.py)
    assert isinstance(presets.pop("auto"), AutoIndexConfig)
    hnsw_large = IndexConfig(
        factory="HNSW16,Flat", build_params={"hnsw": {"efConstruction": 80}}, search_params={"efSearch": 100}
    )
    ivfpq_large = IndexConfig(
        factory="IVF1024,PQ32,RFlat",
        build_params={"base_index": {"do_polysemous_training": False}},
        search_params={"nprobe": 8, "k_factor_rf": 4},
    )
    assert presets == {
        "flat": IndexConfig(),
        "hnsw": HNSW,
        "ivfpq": IVFPQ,
        "hnsw_large": hnsw_large,
        "ivfpq_large": ivfpq_large,
        "ivfflat_large": IndexConfig(factory="IVF2048,Flat", search_params={"nprobe": 128}),
    }
    assert [name for name, config in presets.items() if config.is_exact] == ["flat"]


def test_is_exact_only_for_flat() -> None:
    assert IndexConfig().is_exact
    assert not HNSW.is_exact
    assert not IVFPQ.is_exact
    assert not IndexConfig(factory="PQ8").is_exact


def test_training_failure_names_the_factory() -> None:
    with pytest.raises(ValueError, match=r"index\.factory 'PQ4x8': training on 10 vectors"):
        ItemIndex(
            np.eye(10, 8, dtype=np.float32), np.arange(10), IndexConfig(factory="PQ4x8", size_to_corpus=False)
        )


@pytest.mark.parametrize(
    ("ids", "message"),
    [(np.array([0, 1, 1]), "distinct"), (np.array([0, 1]), "3 rows"), (np.array([0, -1, 2]), "non-negative")],
)
def test_bad_item_ids_are_rejected(ids: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ItemIndex(np.ones((3, 4), dtype=np.float32), ids, IndexConfig())


def test_query_dimension_and_exclusion_rows_are_checked() -> None:
    index = ItemIndex(np.eye(4, dtype=np.float32), np.arange(4), IndexConfig())
    with pytest.raises(ValueError, match="dimension 3"):
        index.search(np.ones((2, 3)), 2)
    with pytest.raises(ValueError, match="exclude has 1 rows for 2 queries"):
        index.search(np.ones((2, 4)), 2, Csr.from_pairs(np.array([0]), np.array([1]), 1))


@pytest.mark.parametrize(
    "config",
    [
        IndexConfig(factory="IVF16,Flat", search_params={"nprobe": 16}),
        IndexConfig(factory="IVF16,PQ8,RFlat", search_params={"nprobe": 16, "k_factor_rf": 16}),
        IndexConfig(factory="IVF16,PQ16x4fs,RFlat", search_params={"nprobe": 16, "k_factor_rf": 16}),
        HNSW,
    ],
    ids=["ivf_flat", "ivfpq_refine", "fast_scan_refine", "hnsw"],
)
def test_a_selector_search_returns_only_allowed_pins_on_every_index_kind(config: IndexConfig) -> None:
    """Conditional retrieval's pre filter through a bitmap on the shared index: an exact re-ranking
    wrapper (RFlat) needs its own search parameters (plain IVF ones raised in faiss)."""
    from ebr.serving.conditional import selector_search

    rng = np.random.default_rng(11)
    items = _clustered(rng, 2_000, 16)
    ids = np.arange(2_000) * 3  # item ids are not positions
    index = ItemIndex(items, ids, config)
    allowed = ids[::5]
    queries = items[:30]
    found, scores = selector_search(index, queries, 10, None, allowed)
    assert np.isin(found, allowed).all()
    exact = _brute_top(items, ids, queries, 10, allowed=[set(allowed.tolist())] * len(queries))
    overlap = np.mean([len(set(f.tolist()) & set(e)) / 10 for f, e in zip(found, exact)])
    # every list is probed: only the codes (re-ranked exactly) or the graph can miss
    assert overlap >= (0.9 if config.factory.startswith("IVF") else 0.6)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
