"""One job as the data flow: data -> split -> corpus -> task -> fit -> retrieve -> evaluate -> metrics.

Every model is a Retriever (ebr.retrieval), so this file has no model-specific branch. The entry
point (ebr.train, through ebr.app and ebr.runs) wraps it with skip/resume, failure records,
loggers and the rank-0 guard. With `eval_only=true` the fit step loads the saved two-tower model
at `ckpt_path` instead of training (docs/serving_corpus.md).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from ebr.data.fingerprint import data_fingerprint
from ebr.data.history import with_history
from ebr.data.schema import InteractionData, Split
from ebr.evaluation.conditional_metrics import by_interest, simulated_by_group
from ebr.evaluation.corpus_metrics import creation_times, new_pin_share, recall_ceiling
from ebr.evaluation.protocol import evaluate_online, evaluate_ranking, task_counts
from ebr.evaluation.simulation import SimulationConfig
from ebr.evaluation.task import HIT_LEVELS, EvalTask, build_eval_task, build_simulation_task, served_from
from ebr.retrieval.model_cache import ModelCache
from ebr.retrieval.popularity import Popularity
from ebr.retrieval.protocol import FitContext, Retriever
from ebr.retrieval.refit import fit_windows
from ebr.runs import JobLoggers, JobResult, is_rank_zero
from ebr.serving.checkpoint import check_same_data, resolve_checkpoint
from ebr.serving.corpus import CorpusPolicy, ServingCorpus, corpus_serving_time, training_window_corpus
from ebr.serving.interests import InterestServing, interest_profile, pin_tags
from ebr.serving.signatures import COARSE, feature_level, pin_signatures, remap_split, with_signature_feature
from ebr.training.setup import seeded_data_and_split

POPULARITY_PREFIX = "popularity/"
TWO_TOWER_TARGET = "ebr.retrieval.two_tower.TwoTowerRetriever"


def simulation_config(cfg: DictConfig, data: InteractionData) -> SimulationConfig | None:
    """The simulated-online settings, or None for data without a true engagement model."""
    return hydra.utils.instantiate(cfg.eval.simulation) if data.truth is not None else None


def run_job(cfg: DictConfig, run_dir: Path, loggers: JobLoggers) -> JobResult:
    """Run one configured job and return its metrics (written by the caller).

    On ranks other than 0 of a multi-process job, only the fit runs (it is collective); the
    result is empty.

    Args:
        cfg: the composed job config.
        run_dir: the job's directory (the model artifact goes there).
        loggers: where training curves go.
    """
    # every setting that can be checked without data fails here, before any data work
    policy: CorpusPolicy = hydra.utils.instantiate(cfg.corpus)
    hit_level = check_hit_level(cfg.eval.get("hit_level", "pin"))
    checkpoint = checkpoint_of(cfg)
    cache = ModelCache.of(cfg)
    interests = InterestServing.of(cfg.serving)
    if interests.interest_metrics and hit_level != "pin":
        raise ValueError("serving.interest_metrics=true scores hits per pin: set eval.hit_level=pin")
    data, split = seeded_data_and_split(cfg)
    policy.budget(data.pins.n_rows)  # a count larger than the data's pins
    label_of = pin_signatures(data.pins, COARSE, "eval.hit_level") if hit_level == "signature" else None
    fingerprint = data_fingerprint(data)
    trained = None if checkpoint is None else check_same_data(checkpoint, data.source, fingerprint)
    # -- refit protocol (eval.refit, ebr/retrieval/refit.py): from here on `split` is the split fitted
    # and scored (train+val -> test under refit); tuning baselines choose on `windows.tuning`
    windows = fit_windows(hydra.utils.instantiate(cfg.split), data, split, cfg.eval.window, cfg.eval.refit)
    split = windows.split
    # -- end of the refit protocol
    # -- the corpus step (docs/serving_corpus.md): built from the fitted events before serving time
    window = cfg.eval.window
    served = policy.build(data.pins, split.train, corpus_serving_time(split, window))
    engaged = split  # labels as engaged, for the share on new pins
    if served.representative is not None:
        split = remap_split(split, served.representative)
    tuning = windows.tuning
    if tuning is not None:
        # tuning baselines choose over the same policy's corpus at the validation window's start
        tuned = policy.build(data.pins, tuning.split.train, corpus_serving_time(tuning.split, "val"))
        tuned_split = (
            tuning.split if tuned.representative is None else remap_split(tuning.split, tuned.representative)
        )
        tuning = dataclasses.replace(tuning, split=tuned_split, corpus=tuned.pins)
    data = with_signature_feature(data, policy.remap_image_signature)
    check_signature_feature(trained, data)
    # -- end of the corpus step
    if cfg.features.history:
        data = with_history(data, split, cfg.features.history_length)
    corpus = served.pins
    exclude_train = cfg.eval.exclude_train
    # window=val scores the validation window instead, for choosing hyperparameters without test.
    # The labels are those of the training-window corpus whatever the policy (the same users and
    # relevant sets in every arm); retrieval returns only the served corpus's pins.
    labels = training_window_corpus(split)
    task = build_eval_task(split, labels, window=window, exclude_train=exclude_train, label_of=label_of)
    task = served_from(task, corpus)
    ks = list(cfg.eval.ks)
    simulation = simulation_config(cfg, data)
    population = None
    if simulation is not None:
        # the simulated users are a fixed sample of the window's active users, the same for every arm
        population = build_simulation_task(
            split, corpus, simulation.users, simulation.seed, window, exclude_train, label_of
        )
    context = FitContext(
        corpus=corpus,
        run_dir=Path(run_dir),
        loggers=loggers.lightning,
        seed=cfg.seed,
        tuning=tuning,
        artifact_info={
            "data_source": data.source,
            "data_fingerprint": fingerprint,
            "image_signature": feature_level(data.pins),
        },
        # the training window's corpus, whatever the serving policy: one model serves every corpus
        negative_pool=labels,
    )

    retriever: Retriever = hydra.utils.instantiate(cfg.model)
    reuse = None
    if cache is not None:
        reuse = cache.fit_or_load(retriever, cfg, data, split, context)
    elif checkpoint is None:
        retriever.fit(data, split, context)
    else:
        retriever.load(checkpoint, data, split)  # type: ignore[attr-defined]
    if not is_rank_zero():
        return JobResult({})

    started = time.perf_counter()
    retrieved = retriever.retrieve(task, max(ks))
    metrics = evaluate_ranking(task, retrieved, ks)
    # the retriever's own metrics (e.g. its index's recall) are those of the evaluation task's queries
    own = retriever.own_metrics()
    online, shown = _online(retriever, population, data, simulation)
    metrics.update(online)
    if interests.interest_metrics:
        profile, tags = interest_profile(data, split.train, interests), pin_tags(data)
        metrics.update(by_interest(task, retrieved, profile.of(task.user_ids)[:2], tags, max(ks)))
        if population is not None and shown is not None and data.truth is not None:
            lengths = profile.counts(population.user_ids)
            metrics.update(simulated_by_group(data.truth, population, shown, simulation, lengths))
    seconds = time.perf_counter() - started
    metrics["eval/seconds"] = seconds
    metrics["eval/users_per_second"] = len(task.user_ids) / max(seconds, 1e-9)
    metrics.update(own)

    # the reference row every report compares against: the most engaged pins, on the same task
    reference = Popularity()
    reference.fit(data, split, context)
    popular = evaluate_ranking(task, reference.retrieve(task, max(ks)), ks)
    popular.update(_online(reference, population, data, simulation)[0])
    metrics.update({f"{POPULARITY_PREFIX}{key}": value for key, value in popular.items()})
    metrics.update(task_counts(task))
    metrics.update(split_counts(split))
    metrics.update(windows.metrics())
    metrics.update(_corpus_metrics(served, split, engaged, data, window, exclude_train, label_of))
    info: dict[str, Any] = {
        "data_name": data.name,
        "data_source": data.source,
        "data_fingerprint": fingerprint,
    }
    if checkpoint is not None:
        info["eval_only"] = {"ckpt_path": str(checkpoint)}
    if reuse is not None:
        info["model_cache"] = reuse
    # a retriever may say what it read besides the data (e.g. the two-tower's ID snapshot)
    own_info = getattr(retriever, "own_info", None)
    if callable(own_info):
        info.update(own_info())
    return JobResult(metrics, info=info)


def checkpoint_of(cfg: DictConfig) -> Path | None:
    """The model file an evaluation-only job serves (None: the job trains); checked before any data work.

    Args:
        cfg: the job config (`eval_only`, `ckpt_path`, `model`).

    Raises:
        ValueError: `ckpt_path` without eval_only, eval_only without a two-tower model, or a
            `ckpt_path` that does not name a model.pt.
    """
    ckpt_path = OmegaConf.select(cfg, "ckpt_path", default=None)
    if not OmegaConf.select(cfg, "eval_only", default=False):
        if ckpt_path:
            raise ValueError(f"ckpt_path={ckpt_path} is read only with eval_only=true (this job would train)")
        return None
    target = OmegaConf.select(cfg, "model._target_", default=None)
    if target != TWO_TOWER_TARGET:
        raise ValueError(
            f"eval_only=true serves a saved two-tower model (model=two_tower), got model {target}"
        )
    return resolve_checkpoint(ckpt_path)


def check_hit_level(level: object) -> str:
    """`eval.hit_level`, checked: "pin" or "signature"."""
    if level not in HIT_LEVELS:
        raise ValueError(f"eval.hit_level must be one of {', '.join(HIT_LEVELS)}, got {level!r}")
    return str(level)


def check_signature_feature(trained: dict[str, Any] | None, data: InteractionData) -> None:
    """Refuse serving a saved model with another `image_signature` feature than it was trained on."""
    if trained is None or "image_signature" not in trained:
        return
    level = feature_level(data.pins)
    if trained["image_signature"] != level:
        raise ValueError(
            f"corpus.remap_image_signature: the model was trained with the {trained['image_signature']}"
            f" image_signature feature, this job's corpus gives it the {level} one; set"
            " corpus.remap_image_signature as in the training run"
        )


def _corpus_metrics(
    served: ServingCorpus,
    split: Split,
    engaged: Split,
    data: InteractionData,
    window: str,
    exclude_train: bool,
    label_of: np.ndarray | None,
) -> dict[str, float]:
    """`corpus/size`, `corpus/duplicates_removed`, `corpus/recall_ceiling`, `corpus/new_pin_share`."""
    metrics = served.metrics()
    metrics["corpus/recall_ceiling"] = recall_ceiling(split, served.pins, window, exclude_train, label_of)
    metrics["corpus/new_pin_share"] = new_pin_share(
        engaged, creation_times(data), served.serving_time, window
    )
    return metrics


def _online(
    retriever: Retriever,
    population: EvalTask | None,
    data: InteractionData,
    simulation: SimulationConfig | None,
) -> tuple[dict[str, float], np.ndarray | None]:
    """The simulated online metrics of a fitted retriever (none for data without a truth), and
    what it retrieved for the simulated population."""
    if population is None or simulation is None or data.truth is None:
        return {}, None
    retrieved = retriever.retrieve(population, simulation.candidates)
    return evaluate_online(data.truth, population, retrieved, simulation), retrieved


def split_counts(split: Split) -> dict[str, Any]:
    """Engagements per window (`data/<window>_engagements`) and the split's cold counts (`data/<key>`)."""
    counts = {
        f"data/{name}_engagements": float(len(getattr(split, name)))
        for name in ("pretrain", "train", "val", "test")
    }
    counts.update({f"data/{name}": float(value) for name, value in split.cold.items()})
    return counts
