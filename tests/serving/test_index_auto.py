"""index=auto (ebr.serving.index_auto): the fastest setting that meets the recall target, else flat."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ebr.serving.index import IndexConfig, ItemIndex
from ebr.serving.index_auto import AutoCandidate, AutoIndexConfig, choice_metrics, choose_index
from tests.serving.index_vectors import _brute_top, _clustered

AUTO_YAML = Path(__file__).resolve().parents[2] / "conf" / "index" / "auto.yaml"
# one exhaustive IVF setting (nprobe = nlist: exact) and one that probes 1 list of 64
IVF = AutoCandidate(factory="IVF64,Flat", sweep={"nprobe": [1, 64]})


def _corpus(n: int = 6000, dim: int = 16, queries: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return _clustered(rng, n, dim), np.arange(n, dtype=np.int64) * 3 + 1, _clustered(rng, queries, dim)


def _independent_recall(found: np.ndarray, items: np.ndarray, ids: np.ndarray, queries: np.ndarray) -> float:
    reference = _brute_top(items, ids, queries, 100)
    return float(
        np.mean([len(set(f.tolist()) & set(r)) / 100 for f, r in zip(found, reference, strict=True)])
    )


def test_an_unreachable_target_serves_flat_and_lists_every_operating_point() -> None:
    items, ids, queries = _corpus()
    index, record = choose_index(items, ids, queries, AutoIndexConfig(target_recall=1.01, candidates=[IVF]))
    assert index.config.is_exact
    assert record["chosen"] == 0
    points = record["operating_points"]
    assert [p["factory"] for p in points] == ["Flat", "IVF64,Flat", "IVF64,Flat"]
    assert [p["search_params"] for p in points] == [{}, {"nprobe": 1.0}, {"nprobe": 64.0}]
    assert not any(p["meets_target"] for p in points)
    # each point's recall is the overlap with the exact top 100, computed here by brute force
    for point, nprobe in zip(points[1:], (1, 64), strict=True):
        index_ivf = ItemIndex(items, ids, IndexConfig(factory="IVF64,Flat", search_params={"nprobe": nprobe}))
        found, _ = index_ivf.search(queries, 100)
        assert point["ann_recall@100"] == pytest.approx(_independent_recall(found, items, ids, queries))
    assert points[2]["ann_recall@100"] == 1.0 > points[1]["ann_recall@100"]


def test_the_fastest_setting_meeting_the_target_is_served() -> None:
    items, ids, queries = _corpus()
    auto = AutoIndexConfig(target_recall=0.95, candidates=[IVF])
    index, record = choose_index(items, ids, queries, auto)
    points = record["operating_points"]
    meeting = [i for i, p in enumerate(points) if p["ann_recall@100"] >= 0.95]
    assert record["chosen"] == max(meeting, key=lambda i: points[i]["queries_per_second"])
    assert index.config.search_params == points[record["chosen"]]["search_params"]
    # a target the one-list setting meets: it scans ~1/64 of the corpus, so it is served
    low = AutoIndexConfig(target_recall=points[1]["ann_recall@100"] / 2, candidates=[IVF])
    index, record = choose_index(items, ids, queries, low)
    chosen = record["operating_points"][record["chosen"]]
    assert chosen["queries_per_second"] > record["operating_points"][0]["queries_per_second"]
    assert record["chosen"] != 0
    assert not index.config.is_exact
    found, _ = index.search(queries, 100)
    assert chosen["ann_recall@100"] == pytest.approx(_independent_recall(found, items, ids, queries))
    metrics = choice_metrics(record)
    assert metrics["serving/index_choice"] == record["chosen"]
    assert metrics["serving/index_choice_ann_recall@100"] == chosen["ann_recall@100"]
    assert metrics["serving/index_choice_operating_points"] == 3


def test_a_small_corpus_is_served_flat_without_building_candidates() -> None:
    items, ids, queries = _corpus(n=800)
    index, record = choose_index(items, ids, queries, AutoIndexConfig(min_corpus=1000, candidates=[IVF]))
    assert index.config.is_exact
    assert len(record["operating_points"]) == 1


def test_the_yaml_option_and_bad_settings() -> None:
    auto = instantiate(OmegaConf.load(AUTO_YAML))
    assert auto.target_recall == 0.95
    assert len(auto.candidates) == 3
    with pytest.raises(ValueError, match=r"index\.target_recall"):
        AutoIndexConfig(target_recall=0)
    with pytest.raises(ValueError, match=r"index.candidates\[0\]"):
        AutoIndexConfig(candidates=[{"factory": "Flat", "nonsense": 1}])
    with pytest.raises(ValueError, match="sweep one parameter"):
        AutoCandidate(factory="IVF8,Flat", sweep={"nprobe": [1], "efSearch": [2]})
    with pytest.raises(ValueError, match="no query vectors"):
        choose_index(*_corpus(n=300)[:2], np.zeros((0, 16), np.float32), AutoIndexConfig())
