"""TwoTowerRetriever.retrieve builds its serving index once per corpus: the simulated population is
served over the evaluation task's corpus, and an ANN build is most of a large corpus's serving."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import ebr.retrieval.two_tower as two_tower
from ebr.config import register_schemas
from ebr.data.csr import Csr
from ebr.evaluation.task import EvalTask

REPO = Path(__file__).resolve().parents[2]


class _Service:
    """Stands in for RetrievalService: counts what the retriever asks of it."""

    def __init__(self, corpus: np.ndarray) -> None:
        self.corpus = np.asarray(corpus, dtype=np.int64)
        self.timings = {"serving/index_build_seconds": 1.0}
        self.recall_calls = 0

    def user_vectors(self, user_ids: np.ndarray) -> np.ndarray:
        return np.ones((len(user_ids), 2), dtype=np.float32)

    def search(self, queries: np.ndarray, k: int, exclude: Csr | None = None) -> np.ndarray:
        return np.tile(self.corpus[:k], (len(queries), 1))

    def ann_recall(self, queries: np.ndarray, n_queries: int) -> float:
        self.recall_calls += 1
        return 0.5


def _task(corpus: list[int]) -> EvalTask:
    users = np.array([3, 4], dtype=np.int64)
    empty = Csr.from_pairs(np.zeros(0), np.zeros(0), 2)
    return EvalTask(users, empty, empty, np.array(corpus, dtype=np.int64), timestamp=0)


def test_retrieve_builds_the_index_once_per_corpus_and_measures_its_recall_once(monkeypatch, tmp_path):
    register_schemas()
    # the trainer's root stands in for Hydra's run directory (no Hydra job runs here)
    overrides = ["data=synthetic_tiny", "index=hnsw", f"trainer.default_root_dir={tmp_path}"]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = compose("train", overrides=overrides)
    retriever = instantiate(cfg.model)
    built: list[_Service] = []

    def from_artifact(path, data, corpus, *args, **kwargs) -> _Service:
        built.append(_Service(corpus))
        return built[-1]

    monkeypatch.setattr(two_tower.RetrievalService, "from_artifact", staticmethod(from_artifact))
    retriever.artifact, retriever._data, retriever._engagements = Path("model.pt"), object(), object()
    first = retriever.retrieve(_task([1, 2, 5]), 2)
    assert first.tolist() == [[1, 2], [1, 2]]
    assert retriever.own_metrics()["ann_recall@100"] == 0.5
    retriever.retrieve(_task([1, 2, 5]), 2)  # the simulated population: the same corpus
    assert len(built) == 1, "one build for one corpus"
    assert built[0].recall_calls == 1, "the index's recall is measured on the first task only"
    retriever.retrieve(_task([2, 7]), 1)  # another corpus: another index
    assert len(built) == 2
    assert built[1].recall_calls == 1
    # a newly loaded model is never served by the last model's index
    monkeypatch.setattr(two_tower.TrainingEngagements, "from_split", staticmethod(lambda split: object()))
    retriever.load(Path("other.pt"), data=object(), split=SimpleNamespace(train=None))
    retriever.retrieve(_task([2, 7]), 1)
    assert len(built) == 3
