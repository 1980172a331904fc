"""The two-tower model as a Retriever: trained with Lightning and torchrec, served from `model.pt`.

`fit` trains the towers (every rank of a multi-process job takes part) and saves the artifact;
`retrieve` serves from the saved artifact alone, through ebr.serving, exactly as a serving
system would: the corpus embedded offline, score terms, the faiss index, users embedded at
request time.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf

from ebr.data.schema import InteractionData, Split
from ebr.evaluation.conditional_metrics import topic_match
from ebr.evaluation.task import EvalTask
from ebr.models.conditioning import (
    ConditioningConfig,
    condition_rows,
    conditioned_user_spec,
    training_conditions,
)
from ebr.models.features import resolve_features, tower_specs
from ebr.retrieval.fingerprint import training_fingerprint
from ebr.retrieval.id_embedding import (
    ID_FEATURES,
    IdEmbeddingConfig,
    PretrainedIds,
    check_dim,
    init_id_tables,
    load_pretrained_ids,
    select_id_features,
)
from ebr.retrieval.protocol import FitContext
from ebr.runs import MODEL_FILE
from ebr.serving.conditional import InterestRetrieval
from ebr.serving.interests import InterestServing
from ebr.serving.score_terms import ScoreColumns, TrainingEngagements
from ebr.serving.service import RetrievalService
from ebr.training.distributed import ensure_process_group
from ebr.training.fit import FitRun, Towers, fit_towers

NETWORK_TARGET = "ebr.models.two_tower.TwoTowerModel"
TOPIC_MATCH_KS = (10, 50, 100)


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


class TwoTowerRetriever:
    """Trains and serves the torchrec two-tower model.

    Built by `conf/model/two_tower.yaml` without recursive instantiation: the network's own config
    (crossing, widths) is saved into `model.pt` so serving rebuilds it without the trainer, and the
    training parts are built here, when the data is known.

    Args:
        crossing: the crossing module's config (a `_partial_` target), used by both towers.
        pin_crossing: a different crossing config for the pin tower (None: the same as users).
        embedding_dim: width of every feature field.
        output_dim: embedding width d.
        dense_hidden: hidden widths of each tower's dense-feature MLP.
        features: which features each tower reads (the `features` node).
        train: the `train` node: batch size, logQ, negatives, sharding, and the loss and both
            optimizers as `_target_` nodes.
        trainer: the Lightning `Trainer` config.
        index: the faiss index config (`index` group).
        serving: the `serving` node (score terms, batch size).
        ann_recall_queries: users on which the index's recall against exact search is measured.
        id_embedding: the `model/id_embedding` node (ebr.retrieval.id_embedding; None: scratch).
        conditioning: the `model/conditioning` node (ebr.models.conditioning; None: none).
    """

    def __init__(
        self,
        crossing: Mapping[str, Any],
        pin_crossing: Mapping[str, Any] | None,
        embedding_dim: int,
        output_dim: int,
        dense_hidden: Sequence[int],
        features: Mapping[str, Any],
        train: Mapping[str, Any],
        trainer: Mapping[str, Any],
        index: Mapping[str, Any],
        serving: Mapping[str, Any],
        ann_recall_queries: int = 10_000,
        id_embedding: Mapping[str, Any] | None = None,
        conditioning: Mapping[str, Any] | None = None,
    ) -> None:
        self.network_config = {
            "_target_": NETWORK_TARGET,
            "_partial_": True,
            "crossing": _plain(crossing),
            "pin_crossing": _plain(pin_crossing),
            "embedding_dim": embedding_dim,
            "output_dim": output_dim,
            "dense_hidden": list(dense_hidden),
        }
        self.features = _plain(features)
        self.train = train
        self.trainer = trainer
        self.index = hydra.utils.instantiate(index)
        self.score_terms = [hydra.utils.instantiate(term) for term in serving["score_terms"].values()]
        self.serving_batch_size = int(serving["batch_size"])
        self.ann_recall_queries = ann_recall_queries
        self.id_embedding = IdEmbeddingConfig.of(_plain(id_embedding))
        self.conditioning = ConditioningConfig.of(_plain(conditioning))
        self.interest_serving = InterestServing.of(_plain(serving))
        self._train_events = None
        self._pretrained: PretrainedIds | None = None
        self.artifact: Path | None = None
        self._service: RetrievalService | None = None
        self._data: InteractionData | None = None
        self._engagements: TrainingEngagements | None = None
        self._metrics: dict[str, float] = {}

    def fit(self, data: InteractionData, split: Split, context: FitContext) -> None:
        """Train on `split.train` (validation loss on `split.val`) and save `model.pt`.

        Under the refit protocol `split.train` is train+val and `split.val` is empty, so no
        validation loss is computed (`final_val_loss` is absent): validation rows are training
        rows then. `context.tuning` is not read: the hyperparameters are config.

        Args:
            data: the data set.
            split: the split (`split.test` is never read).
            context: the negative pool, run directory and loggers.
        """
        created_group = ensure_process_group(context.run_dir)
        try:
            self._fit(data, split, context)
        finally:
            if created_group and dist.is_initialized():
                dist.destroy_process_group()
        self._data = data
        self._engagements = TrainingEngagements.from_split(split)
        self._train_events = split.train

    def load(
        self,
        artifact: Path,
        data: InteractionData,
        split: Split,
        training_metrics: Mapping[str, float] | None = None,
    ) -> None:
        """Serve an already saved `model.pt` instead of training (evaluation-only mode, the model
        cache).

        The artifact's own network and features are used; this retriever's index, score terms and
        serving batch size are the job's.

        Args:
            artifact: the model file (checked by ebr.serving.checkpoint).
            data: the data set it is served on.
            split: the fitted split (the score terms' training engagements).
            training_metrics: the statistics of the training that saved it, reported as this
                job's (the model cache keeps them); None: none are reported.
        """
        self.artifact, self._service = Path(artifact), None
        self._data = data
        self._engagements = TrainingEngagements.from_split(split)
        self._metrics = dict(training_metrics or {})
        self._train_events = split.train

    def towers(self, data: InteractionData, split: Split) -> Towers:
        """The towers on this data: the features, specs and network config as the parts shape them.

        With pre-trained IDs this chooses and loads the snapshot (kept for serving's coverage).

        Args:
            data: the data set.
            split: the fitted split (the snapshot policy reads its training window).
        """
        features = select_id_features(resolve_features(self.features, data), self.id_embedding)
        user_spec, pin_spec = tower_specs(data, features)
        network = self.network_config
        pretrained = None
        if self.id_embedding.mode == "pretrained":
            pretrained = load_pretrained_ids(self.id_embedding, data, split, features)
            check_dim(pretrained, int(network["embedding_dim"]))
            user_spec, pin_spec = (
                dataclasses.replace(
                    spec, id_feature=ID_FEATURES[side], id_rows=len(pretrained.snapshot.ids[side])
                )
                for side, spec in (("user", user_spec), ("pin", pin_spec))
            )
            # only a pre-trained model's config gains these keys: scratch saves today's model.pt
            network = {
                **network,
                "id_freeze": self.id_embedding.freeze,
                "id_dropout": self.id_embedding.dropout,
            }
        self._pretrained = pretrained
        condition_of = None
        if self.conditioning.active:
            # the condition table's rows and the early-fusion field (docs/conditional.md)
            rows = condition_rows(data)
            user_spec = conditioned_user_spec(user_spec, self.conditioning, rows)
            network = {**network, "conditioning": {"mode": self.conditioning.mode, "rows": rows}}
            condition_of = functools.partial(
                training_conditions,
                data=data,
                source=self.conditioning.source,
            )
        return Towers(
            network=network,
            features=features,
            user_spec=user_spec,
            pin_spec=pin_spec,
            init=None if pretrained is None else functools.partial(init_id_tables, pretrained=pretrained),
            condition_of=condition_of,
            manifest={"id_embedding": self.id_embedding.mode},
            metrics={} if pretrained is None else pretrained.metrics(),
        )

    def _fit(self, data: InteractionData, split: Split, context: FitContext) -> None:
        towers = self.towers(data, split)

        def fingerprint() -> dict[str, str]:
            settings = {
                "train": _plain(self.train),
                "trainer": _plain(self.trainer),
                "network": towers.network,
                "features": towers.features,
                "id_embedding": dataclasses.asdict(self.id_embedding),
            }
            return training_fingerprint(settings, data, split, context)

        run = FitRun(
            run_dir=Path(context.run_dir),
            negative_pool=context.negatives,
            seed=context.seed,
            loggers=context.loggers,
            artifact_info=context.artifact_info,
            fingerprint=fingerprint,
        )
        self._metrics = fit_towers(data, split, towers, self.train, self.trainer, run)
        self.artifact, self._service = Path(context.run_dir) / MODEL_FILE, None

    def retrieve(self, task: EvalTask, k: int) -> np.ndarray:
        """Serve the saved model over the task's corpus and search for every task user.

        Args:
            task: users, corpus and exclusions.
            k: results per user.
        """
        if self.artifact is None or self._data is None or self._engagements is None:
            raise RuntimeError("TwoTowerRetriever.retrieve called before fit")
        if self.interest_serving.engaged(self.conditioning.active):
            return self._retrieve_by_interest(task, k)
        service = self._service
        # one build per corpus: the simulated population is served over the task's corpus too,
        # and an ANN index's build is most of a large corpus's serving time
        fresh = service is None or not np.array_equal(service.corpus, task.corpus)
        if fresh:
            service = self._service = RetrievalService.from_artifact(
                self.artifact,
                self._data,
                task.corpus,
                self.index,
                ScoreColumns.build(self.score_terms, self._engagements, task.corpus),
                batch_size=self.serving_batch_size,
            )
        queries = service.user_vectors(task.user_ids)
        retrieved = service.search(queries, k, task.exclude)
        self._metrics.update(service.timings)
        if fresh:  # the index's, on the first task served over it (the evaluation task)
            self._metrics["ann_recall@100"] = service.ann_recall(queries, self.ann_recall_queries)
        if self._pretrained is not None and "id_coverage/user" not in self._metrics:
            # of the first task retrieved for: the evaluation task (the pipeline asks it first)
            self._metrics.update(self._pretrained.coverage(task))
        return retrieved

    def _retrieve_by_interest(self, task: EvalTask, k: int) -> np.ndarray:
        """Interest-aware serving (ebr.serving.conditional): per-interest queries, filters, the merge."""
        retrieval = InterestRetrieval.from_artifact(
            self.artifact,
            self._data,
            self._train_events,
            task.corpus,
            self.index,
            ScoreColumns.build(self.score_terms, self._engagements, task.corpus),
            self.interest_serving,
            batch_size=self.serving_batch_size,
        )
        retrieved = retrieval.retrieve(task.user_ids, k, task.exclude)
        self._metrics.update(retrieval.last)
        lists, conditions, per_user = retrieval.queries
        ks = [cut for cut in TOPIC_MATCH_KS if cut <= k] or [k]
        self._metrics.update(topic_match(lists, conditions, retrieval.tags, ks, per_user))
        self._metrics["ann_recall@100"] = retrieval.service.ann_recall(
            retrieval.first_queries, self.ann_recall_queries
        )
        return retrieved

    def own_metrics(self) -> dict[str, float]:
        """Training statistics (train/..., final_train_loss, final_val_loss) and ann_recall@100;
        with pre-trained IDs the snapshot's window and `id_coverage/user`, `id_coverage/pin`."""
        return dict(self._metrics)

    def own_info(self) -> dict[str, Any]:
        """What run.json records besides the metrics: the ID embedding mode and chosen snapshot."""
        info: dict[str, Any] = {"mode": self.id_embedding.mode}
        if self._pretrained is not None:
            info["snapshot"] = self._pretrained.describe()
        return {"id_embedding": info}
