"""The two-tower model as a Retriever: trained with Lightning and torchrec, served from `model.pt`.

`fit` trains the towers (every rank of a multi-process job takes part) and saves the artifact;
`retrieve` serves from the saved artifact alone, through ebr.serving, exactly as a serving
system would: the corpus embedded offline, score terms, the faiss index, users embedded at
request time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import hydra
import numpy as np
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf

from ebr.data.schema import InteractionData, Split
from ebr.evaluation.conditional_metrics import topic_match
from ebr.evaluation.task import EvalTask
from ebr.models.assembly import Towers, plain_towers
from ebr.models.conditioning import (
    ConditioningConfig,
)
from ebr.models.features import resolve_features
from ebr.models.user_encoder import UserEncoderConfig, with_causal_history
from ebr.retrieval.fingerprint import training_fingerprint
from ebr.retrieval.id_embedding import (
    IdEmbeddingConfig,
    PretrainedIds,
)
from ebr.retrieval.protocol import FitContext
from ebr.runs import MODEL_FILE
from ebr.runs.console import stage
from ebr.serving.conditional import InterestRetrieval
from ebr.serving.index_auto import AutoIndexConfig
from ebr.serving.interests import InterestServing
from ebr.serving.score_terms import ScoreColumns, TrainingEngagements
from ebr.serving.service import RetrievalService
from ebr.training.distributed import ensure_process_group
from ebr.training.fit import FitRun, fit_towers
from ebr.training.negatives import NoNegatives

NETWORK_TARGET = "ebr.models.two_tower.TwoTowerModel"
# the model node's keys that are the network's own (saved into model.pt as given)
NETWORK_KEYS = ("crossing", "pin_crossing", "embedding_dim", "output_dim", "dense_hidden")
TOPIC_MATCH_KS = (10, 50, 100)


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def tuning_users(split: Split) -> np.ndarray:
    """The users index=auto measures its candidates on, in a fixed random order: the validation
    window's (the training window's under refit, whose validation window is empty); never the test's.

    Args:
        split: the fitted split.
    """
    events = split.val if len(split.val) else split.train
    users = np.unique(events["user"].to_numpy()).astype(np.int64)
    # a fixed spread over the sorted ids: the same sample for every arm of a comparison
    return users[np.random.default_rng(0).permutation(len(users))]


def _part(node: Any, kind: type) -> Any:
    """A technique's part: given built, built by Hydra from its config node (`_target_`), or, for a
    plain mapping of its settings, `kind(**node)` (None: `kind()`, the part off)."""
    if node is None:
        return kind()
    if not isinstance(node, Mapping):
        return node
    if "_target_" in node:
        return hydra.utils.instantiate(node)
    return kind(**_plain(node))


class TwoTowerRetriever:
    """Trains and serves the torchrec two-tower model.

    Built by `conf/model/two_tower.yaml` without recursive instantiation: the network's own config
    (crossing, widths) is saved into `model.pt` as given, so serving rebuilds it without the trainer;
    the parts (`model/id_embedding`, `model/conditioning`, `model/negatives`) are built by Hydra
    from their nodes here, and shape the towers when the data is known (ebr.models.assembly).

    Args:
        training: what training reads of the job's config: `features` (which features each tower
            reads), `train` (batch size, logQ, sharding, the loss and both optimizers as `_target_`
            nodes) and `trainer` (the Lightning `Trainer` config).
        serving: what serving reads: `index` (the faiss index config), `settings` (the job's
            `serving` node: score terms, batch size, interest serving) and `ann_recall_queries`
            (users on which the index's recall against exact search is measured).
        id_embedding: the `model/id_embedding` part or its node (ebr.retrieval.id_embedding; None:
            scratch).
        conditioning: the `model/conditioning` part or its node (ebr.models.conditioning; None: none).
        negatives: the `model/negatives` part or its node (ebr.training.negatives; None: none).
        user_encoder: the `model/user_encoder` part or its node (ebr.models.user_encoder; None: bag).
        network: the TwoTowerModel's own settings, saved into `model.pt` as given: `crossing` (the
            crossing's `_partial_` config, both towers), `pin_crossing` (another for the pin tower;
            None: the same), `embedding_dim` (every field's width), `output_dim` (the embedding
            width d), `dense_hidden` (each tower's dense-feature MLP widths).
    """

    loadable: ClassVar[bool] = True  # `load` serves a saved model.pt (eval_only, the model cache)

    def __init__(
        self,
        training: Mapping[str, Any],
        serving: Mapping[str, Any],
        id_embedding: Any = None,
        conditioning: Any = None,
        negatives: Any = None,
        user_encoder: Any = None,
        **network: Any,
    ) -> None:
        if set(network) != set(NETWORK_KEYS):
            missing, unknown = (
                sorted(set(NETWORK_KEYS) - set(network)),
                sorted(set(network) - set(NETWORK_KEYS)),
            )
            raise TypeError(
                f"TwoTowerRetriever: network settings missing {missing}, unknown {unknown}; "
                f"the network's keys are {list(NETWORK_KEYS)}"
            )
        self.network_config = {
            "_target_": NETWORK_TARGET,
            "_partial_": True,
            **{key: _plain(network[key]) for key in NETWORK_KEYS},
        }
        self.network_config["dense_hidden"] = list(self.network_config["dense_hidden"])
        self.features = _plain(training["features"])
        self.train = training["train"]
        self.trainer = training["trainer"]
        settings = serving["settings"]
        self.index = hydra.utils.instantiate(serving["index"])
        self.score_terms = [hydra.utils.instantiate(term) for term in settings["score_terms"].values()]
        self.serving_batch_size = int(settings["batch_size"])
        self.ann_recall_queries = int(serving["ann_recall_queries"])
        self.id_embedding: IdEmbeddingConfig = _part(id_embedding, IdEmbeddingConfig)
        self.conditioning: ConditioningConfig = _part(conditioning, ConditioningConfig)
        self.negatives = _part(negatives, NoNegatives)
        self.user_encoder: UserEncoderConfig = _part(user_encoder, UserEncoderConfig)
        self.interest_serving = InterestServing.of(_plain(settings))
        self._train_events = None
        self._pretrained: PretrainedIds | None = None
        self.artifact: Path | None = None
        self._service: RetrievalService | None = None
        self._interest: InterestRetrieval | None = None
        self._data: InteractionData | None = None
        self._engagements: TrainingEngagements | None = None
        # index=auto chooses the index on this split's validation users' queries, never the test's
        self._tuning_split: Split | None = None
        self._index_choice: dict[str, Any] | None = None
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
        data = self.user_encoder.prepare(data, split)  # serving reads the same user table
        created_group = ensure_process_group(context.run_dir)
        try:
            self._fit(data, split, context)
        finally:
            if created_group and dist.is_initialized():
                dist.destroy_process_group()
        self._data = data
        self._engagements = TrainingEngagements.from_split(split)
        self._train_events = split.train
        self._tuning_split = split

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
        self.artifact, self._service, self._interest = Path(artifact), None, None
        self._data = self.user_encoder.prepare(data, split)
        self._engagements = TrainingEngagements.from_split(split)
        self._metrics = dict(training_metrics or {})
        self._train_events = split.train
        self._tuning_split = split

    def towers(self, data: InteractionData, split: Split) -> Towers:
        """The towers on this data: the features, specs and network config as the parts shape them.

        With pre-trained IDs this chooses and loads the snapshot (kept for serving's coverage).

        Args:
            data: the data set.
            split: the fitted split (the snapshot policy reads its training window).
        """
        towers = plain_towers(self.network_config, resolve_features(self.features, data), data)
        # the ID part first: the saved network config lists its keys before conditioning's
        for part in (self.id_embedding, self.conditioning, self.user_encoder):
            towers = part.apply(towers, data, split)
        towers = with_causal_history(towers, self.features)
        self._pretrained = towers.sources.get("id_embedding")
        return towers

    def _fit(self, data: InteractionData, split: Split, context: FitContext) -> None:
        towers = self.towers(data, split)

        def fingerprint() -> dict[str, str]:
            settings = {
                "train": _plain(self.train),
                "trainer": _plain(self.trainer),
                "network": towers.network,
                "features": towers.features,
                "id_embedding": dataclasses.asdict(self.id_embedding),
                "negatives": {"part": type(self.negatives).__name__, **dataclasses.asdict(self.negatives)},
            }
            if self.user_encoder.active:  # the bag's fingerprint stays what it was
                settings["user_encoder"] = dataclasses.asdict(self.user_encoder)
            if "history_bag" in towers.manifest:  # so does the whole-window history bag's
                settings["history_bag"] = towers.manifest["history_bag"]
            return training_fingerprint(settings, data, split, context)

        run = FitRun(
            run_dir=Path(context.run_dir),
            negatives=self.negatives.bind(context.negatives),
            seed=context.seed,
            loggers=context.loggers,
            artifact_info=context.artifact_info,
            fingerprint=fingerprint,
        )
        self._metrics = fit_towers(data, split, towers, self.train, self.trainer, run)
        self.artifact, self._service, self._interest = Path(context.run_dir) / MODEL_FILE, None, None

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
            with stage(f"serving: corpus embedded and index built ({len(task.corpus):,} pins)"):
                service = self._service = RetrievalService.from_artifact(
                    self.artifact,
                    self._data,
                    task.corpus,
                    self.index,
                    ScoreColumns.build(self.score_terms, self._engagements, task.corpus),
                    batch_size=self.serving_batch_size,
                )
            self._choose_index(service)
        queries = service.user_vectors(task.user_ids)
        retrieved = service.search(queries, k, task.exclude)
        if fresh:  # the index's, on the first task served over it (the evaluation task)
            self._metrics["ann_recall@100"] = service.ann_recall(queries, self.ann_recall_queries)
        self._metrics.update(service.timings)  # the search's, and ann_recall's side-by-side timing
        if self._pretrained is not None and "id_coverage/user" not in self._metrics:
            # of the first task retrieved for: the evaluation task (the pipeline asks it first)
            self._metrics.update(self._pretrained.coverage(task))
        return retrieved

    def _choose_index(
        self, service: RetrievalService, queries_of: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> None:
        """With index=auto, the choice on validation users' queries (`queries_of`, default the plain
        user vectors) for a freshly built service; nothing otherwise."""
        if not isinstance(self.index, AutoIndexConfig):
            return
        with stage(f"serving: index=auto measured {len(self.index.candidates)} candidates"):
            self._index_choice = service.choose_index(tuning_users(self._tuning_split), queries_of)
        self._metrics.update(service.timings)

    def _retrieve_by_interest(self, task: EvalTask, k: int) -> np.ndarray:
        """Interest-aware serving (ebr.serving.conditional): per-interest queries, filters, the merge."""
        retrieval = self._interest
        # one build (and with index=auto one choice) per corpus, as for plain serving
        fresh = retrieval is None or not np.array_equal(retrieval.service.corpus, task.corpus)
        if fresh:
            retrieval = self._interest = InterestRetrieval.from_artifact(
                self.artifact,
                self._data,
                self._train_events,
                task.corpus,
                self.index,
                ScoreColumns.build(self.score_terms, self._engagements, task.corpus),
                self.interest_serving,
                batch_size=self.serving_batch_size,
            )
            self._choose_index(retrieval.service, retrieval.sample_queries)
        retrieved = retrieval.retrieve(task.user_ids, k, task.exclude)
        self._metrics.update(retrieval.last)
        lists, conditions, per_user = retrieval.queries
        ks = [cut for cut in TOPIC_MATCH_KS if cut <= k] or [k]
        self._metrics.update(topic_match(lists, conditions, retrieval.tags, ks, per_user))
        self._metrics["ann_recall@100"] = retrieval.service.ann_recall(
            retrieval.first_queries, self.ann_recall_queries
        )
        self._metrics.update(retrieval.service.timings)
        return retrieved

    def own_metrics(self) -> dict[str, float]:
        """Training statistics (train/..., final_train_loss, final_val_loss) and ann_recall@100;
        with pre-trained IDs the snapshot's window and `id_coverage/user`, `id_coverage/pin`."""
        return dict(self._metrics)

    def info(self) -> dict[str, Any]:
        """What run.json records besides the metrics: the ID embedding mode and chosen snapshot."""
        info: dict[str, Any] = {"mode": self.id_embedding.mode}
        if self._pretrained is not None:
            info["snapshot"] = self._pretrained.describe()
        record: dict[str, Any] = {"id_embedding": info}
        if self._index_choice is not None:
            record["index_choice"] = self._index_choice
        return record
