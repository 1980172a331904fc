"""One job end to end: data -> split -> train -> save -> serve -> evaluate -> metrics.

The entry point (ebr.train) wraps this with Hydra, resume and failure handling.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf

from ebr.baselines.base import TUNE_METRIC_K
from ebr.data.batching import FeatureGatherer
from ebr.data.datamodule import TwoTowerDataModule
from ebr.data.history import with_history
from ebr.data.schema import InteractionData, Split
from ebr.evaluation.popularity import popularity_ranking
from ebr.evaluation.protocol import evaluate_embeddings, evaluate_ranking
from ebr.evaluation.simulation import SimulationConfig
from ebr.evaluation.task import EvalTask, build_eval_task
from ebr.models.artifact import build_model, load_artifact, save_artifact
from ebr.models.frequency import CountMinSketch, ExactFrequency
from ebr.models.loss import SampledSoftmaxLoss
from ebr.models.tower import TowerSpec
from ebr.serving.corpus import training_window_corpus
from ebr.serving.embed import embed_rows, tower_encoder
from ebr.serving.popularity_prior import pin_log_engagements, with_popularity_prior
from ebr.training.distributed import ensure_process_group
from ebr.training.loggers import log_final_metrics
from ebr.training.module import TwoTowerModule

log = logging.getLogger(__name__)

TWO_TOWER_TARGET = "ebr.models.two_tower.TwoTowerModel"
LOGQ_OPTIONS = ("sketch", "exact", "none")


def resolve_features(cfg: DictConfig, data: InteractionData) -> dict[str, list[str]]:
    """Feature names per tower: the config's lists, or every feature of the table when null."""
    chosen = {
        "user_sparse": cfg.features.user_sparse,
        "user_dense": cfg.features.user_dense,
        "pin_sparse": cfg.features.pin_sparse,
        "pin_dense": cfg.features.pin_dense,
    }
    defaults = {
        "user_sparse": list(data.users.categorical),
        "user_dense": list(data.users.dense),
        "pin_sparse": list(data.pins.categorical),
        "pin_dense": list(data.pins.dense),
    }
    return {key: list(defaults[key] if value is None else value) for key, value in chosen.items()}


def tower_specs(data: InteractionData, features: dict[str, list[str]]) -> tuple[TowerSpec, TowerSpec]:
    def spec(name: str, table, sparse: list[str], dense: list[str]) -> TowerSpec:
        missing = [f for f in sparse if f not in table.categorical]
        if missing:
            raise KeyError(
                f"features.{name}_sparse: unknown feature(s) {missing}; "
                f"{data.name} {name}s have {sorted(table.categorical)}"
            )
        width = table.dense_matrix(dense).shape[1] if dense else 0
        return TowerSpec(name, {f: table.categorical[f].cardinality for f in sparse}, width)

    return (
        spec("user", data.users, features["user_sparse"], features["user_dense"]),
        spec("pin", data.pins, features["pin_sparse"], features["pin_dense"]),
    )


def make_frequency(option: str, split: Split, num_pins: int) -> torch.nn.Module | None:
    if option not in LOGQ_OPTIONS:
        raise ValueError(f"train.logq={option!r} is not one of {list(LOGQ_OPTIONS)}")
    if option == "sketch":
        return CountMinSketch()
    if option == "exact":
        return ExactFrequency(split.train["pin"].to_numpy(), num_pins)
    return None


def train_two_tower(
    cfg: DictConfig, data: InteractionData, split: Split, corpus: np.ndarray, run_dir: Path, loggers: list
) -> tuple[Path, dict[str, float]]:
    """Fit the two-tower model and save its artifact; returns (artifact path, training stats)."""
    features = resolve_features(cfg, data)
    user_spec, pin_spec = tower_specs(data, features)
    train_cfg = cfg.train
    datamodule = TwoTowerDataModule(
        data,
        split,
        features["user_sparse"],
        features["pin_sparse"],
        features["user_dense"],
        features["pin_dense"],
        batch_size=train_cfg.batch_size,
        seed=cfg.seed,
        num_negatives=train_cfg.num_negatives,
        negative_pool=corpus,
    )
    module = TwoTowerModule(
        model_factory=lambda: build_model(cfg.model, user_spec, pin_spec),
        loss=SampledSoftmaxLoss(train_cfg.temperature, train_cfg.max_scale, train_cfg.learn_temperature),
        frequency=make_frequency(train_cfg.logq, split, data.pins.n_rows),
        negative_pool_size=len(corpus),
        dense_lr=train_cfg.dense_lr,
        sparse_lr=train_cfg.sparse_lr,
        sparse_optimizer=train_cfg.sparse_optimizer,
        sharding=train_cfg.sharding,
        weight_decay=train_cfg.weight_decay,
        run_dir=run_dir,
    )
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False)
    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    seconds = time.perf_counter() - started
    artifact = run_dir / "model.pt"
    save_artifact(artifact, cfg.model, user_spec, pin_spec, features, module.export_state_dict())
    examples = trainer.current_epoch * len(datamodule.train_dataloader().dataset) * train_cfg.batch_size
    stats = {
        "train/seconds": seconds,
        "train/examples": float(len(split.train)),
        "train/examples_per_second": examples / max(seconds, 1e-9),
        "train/epochs": float(trainer.current_epoch),
    }
    for key in ("train/loss", "val/loss"):
        if key in trainer.callback_metrics:
            stats[f"final_{key.replace('/', '_')}"] = float(trainer.callback_metrics[key])
    return artifact, stats


def simulation_config(cfg: DictConfig, data: InteractionData) -> SimulationConfig | None:
    """The simulated-online settings, or None for data without a true engagement model."""
    return hydra.utils.instantiate(cfg.eval.simulation) if data.truth is not None else None


def evaluate_artifact(
    artifact: Path,
    data: InteractionData,
    task: EvalTask,
    cfg: DictConfig,
    train_split: Split | None = None,
) -> dict[str, float]:
    """Serve from the saved model alone: embed the corpus and the users, search, score.

    Args:
        artifact: the saved model.
        data: users' and pins' features (and the synthetic truth, if any).
        task: who is scored on which pins.
        cfg: the job config (`index`, `eval`).
        train_split: the split whose training window counts the pins' engagements for the
            popularity prior; needed (and read) only when `index.popularity_prior` > 0.
    """
    model, payload = load_artifact(artifact)
    features = payload["features"]
    pin_gatherer = FeatureGatherer(data.pins, features["pin_sparse"], features["pin_dense"], "pins")
    user_gatherer = FeatureGatherer(data.users, features["user_sparse"], features["user_dense"], "users")
    started = time.perf_counter()
    pin_embeddings = embed_rows(
        tower_encoder(model.pin_tower), pin_gatherer, task.corpus, desc="embed corpus"
    )
    user_embeddings = embed_rows(
        tower_encoder(model.user_tower), user_gatherer, task.user_ids, desc="embed users"
    )
    index_node = OmegaConf.to_container(cfg.index, resolve=True)
    # interim: the prior's weight still rides in the index group until it becomes a serving score
    # term; IndexConfig no longer holds it
    prior_weight = float(index_node.pop("popularity_prior", 0.0))
    index_config = hydra.utils.instantiate(index_node)
    if prior_weight != 0:
        if train_split is None:
            raise ValueError("index.popularity_prior > 0 needs the corpus pins' training engagements")
        user_embeddings, pin_embeddings = with_popularity_prior(
            user_embeddings,
            pin_embeddings,
            pin_log_engagements(train_split, task.corpus),
            prior_weight,
        )
    simulation = simulation_config(cfg, data)
    metrics = evaluate_embeddings(
        task,
        user_embeddings,
        pin_embeddings,
        index_config,
        ks=list(cfg.eval.ks),
        truth=data.truth,
        simulation=simulation,
        ann_recall_queries=cfg.eval.ann_recall_queries,
    )
    seconds = time.perf_counter() - started
    metrics["eval/seconds"] = seconds
    metrics["eval/users_per_second"] = len(task.user_ids) / max(seconds, 1e-9)
    return metrics


def run_job(cfg: DictConfig, run_dir: Path, loggers: list | None = None) -> dict[str, float]:
    """Run one configured job and return its metrics (not yet written)."""
    loggers = loggers or []
    if cfg.num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {cfg.num_threads}")
    torch.set_num_threads(cfg.num_threads)
    pl.seed_everything(cfg.seed, workers=True)
    data: InteractionData = hydra.utils.instantiate(cfg.data)
    split: Split = hydra.utils.instantiate(cfg.split)(data)
    if cfg.features.history:
        data = with_history(data, split, cfg.features.history_length)
    corpus = training_window_corpus(split)
    # window=val scores the validation window instead, for choosing hyperparameters without test
    task = build_eval_task(split, corpus, window=cfg.eval.window, exclude_train=cfg.eval.exclude_train)
    ks = list(cfg.eval.ks)
    simulation = simulation_config(cfg, data)
    # the simulated funnel may look deeper into the candidate list than the largest K
    depth = max(max(ks), simulation.candidates if simulation is not None else 0)
    metrics: dict[str, float] = {}
    if cfg.model.get("_target_") == TWO_TOWER_TARGET:
        created_group = ensure_process_group(run_dir)
        try:
            artifact, stats = train_two_tower(cfg, data, split, corpus, run_dir, loggers)
        finally:
            if created_group and dist.is_initialized():
                dist.destroy_process_group()
        metrics.update(stats)
        metrics.update(evaluate_artifact(artifact, data, task, cfg, split))
    else:
        retriever = hydra.utils.instantiate(cfg.model)
        retriever.fit(split, data.users.n_rows, data.pins.n_rows)
        retrieved = retriever.retrieve(task, depth)
        metrics.update(evaluate_ranking(task, retrieved, ks, truth=data.truth, simulation=simulation))
        metrics.update(tuning_metrics(retriever))
    popular = popularity_ranking(split.train, task, depth)
    metrics.update(
        evaluate_ranking(task, popular, ks, truth=data.truth, simulation=simulation, prefix="popularity/")
    )
    metrics.update(_split_counts(split))
    log_final_metrics(loggers, metrics)
    return metrics


def tuning_metrics(retriever: object) -> dict[str, float]:
    """A baseline's hyperparameter and its validation scores, e.g. tune/rank, tune/recall@50[rank=32].

    Args:
        retriever: a fitted baseline; its `validation` ({value: val recall@50}) is empty unless tuned.
    """
    name = next((n for n in ("rank", "neighbours") if hasattr(retriever, n)), None)
    validation: dict[str, float] = getattr(retriever, "validation", {})
    label = name or "value"
    metrics = {f"tune/recall@{TUNE_METRIC_K}[{label}={value}]": float(s) for value, s in validation.items()}
    if name is not None:
        metrics[f"tune/{name}"] = float(getattr(retriever, name))
    return metrics


def _split_counts(split: Split) -> dict[str, Any]:
    counts = {
        f"data/{name}_engagements": float(len(getattr(split, name)))
        for name in ("pretrain", "train", "val", "test")
    }
    counts.update({f"data/{name}": float(value) for name, value in split.cold.items()})
    return counts


def config_to_dict(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
