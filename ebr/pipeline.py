"""One job as the data flow: data -> split -> corpus -> task -> fit -> retrieve -> evaluate -> metrics.

Every model is a Retriever (ebr.retrieval.protocol), so this file never names one: it asks the
retriever to fit, or to load a saved model, and what to record (`info`). The entry point (ebr.train,
through ebr.app and ebr.runs) wraps it with skip/resume, failure records, loggers and the rank-0
guard. With `eval_only=true` the fit step loads the saved model at `ckpt_path` instead of training;
only a `loadable` retriever (the two-tower) saves one (docs/serving_corpus.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig

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
from ebr.retrieval.protocol import FitContext, Retriever, TuningWindow, checkpoint_of, retriever_class
from ebr.retrieval.refit import fit_windows
from ebr.runs import JobLoggers, JobResult, is_rank_zero
from ebr.runs.console import stage
from ebr.serving.corpus import CorpusPolicy, training_window_corpus
from ebr.serving.corpus_step import CorpusStep, ServedSplit, corpus_step, serving_warnings
from ebr.serving.interests import InterestServing, interest_profile, pin_tags
from ebr.serving.signatures import COARSE, feature_level, pin_signatures
from ebr.training.setup import seeded_data_and_split

POPULARITY_PREFIX = "popularity/"


def simulation_config(cfg: DictConfig, data: InteractionData) -> SimulationConfig | None:
    """The simulated-online settings, or None for data without a true engagement model."""
    return hydra.utils.instantiate(cfg.eval.simulation) if data.truth is not None else None


@dataclass(frozen=True)
class JobSettings:
    """What a job reads of its config, checked before any data work.

    Args:
        policy: the corpus policy (`corpus`).
        hit_level: `eval.hit_level`.
        checkpoint: the saved model an evaluation-only job serves (None: the job fits).
        cache: the model cache (None: off for this job).
        interests: the interest-serving keys (`serving`).
        window: `eval.window`.
        exclude_train: `eval.exclude_train`.
        ks: `eval.ks`.
    """

    policy: CorpusPolicy
    hit_level: str
    checkpoint: Path | None
    cache: ModelCache | None
    interests: InterestServing
    window: str
    exclude_train: bool
    ks: list[int]

    @classmethod
    def of(cls, cfg: DictConfig) -> JobSettings:
        """Read and check the job config's settings.

        Args:
            cfg: the composed job config.
        """
        policy: CorpusPolicy = hydra.utils.instantiate(cfg.corpus)
        hit_level = check_hit_level(cfg.eval.get("hit_level", "pin"))
        checkpoint = checkpoint_of(cfg)
        cache = ModelCache.of(cfg)
        interests = InterestServing.of(cfg.serving)
        if interests.interest_metrics and hit_level != "pin":
            raise ValueError("serving.interest_metrics=true scores hits per pin: set eval.hit_level=pin")
        window, exclude_train, ks = cfg.eval.window, cfg.eval.exclude_train, list(cfg.eval.ks)
        return cls(policy, hit_level, checkpoint, cache, interests, window, exclude_train, ks)

    def label_of(self, data: InteractionData) -> np.ndarray | None:
        """Pin -> label (its coarse signature) with `eval.hit_level=signature`; None: per pin.

        Args:
            data: the data set as loaded.
        """
        return pin_signatures(data.pins, COARSE, "eval.hit_level") if self.hit_level == "signature" else None

    def trained_model(self, data: InteractionData, fingerprint: str) -> dict[str, Any] | None:
        """The info of the saved model an evaluation-only job serves, checked against the data
        (None: the job fits).

        Args:
            data: the data set as loaded.
            fingerprint: its `data_fingerprint`.
        """
        if self.checkpoint is None:
            return None
        # imported here: the saved model's reader loads torch and torchrec, which a fitting job of a
        # baseline never needs (experiments/benchmark.md, "Start-up")
        from ebr.serving.checkpoint import check_same_data

        return check_same_data(self.checkpoint, data.source, fingerprint)


@dataclass(frozen=True)
class Scoring:
    """What a fitted retriever is scored on.

    Args:
        task: the evaluation task: the labels of the training window's corpus, retrieval from the
            served corpus.
        labels: the training window's corpus (also the pool training negatives are drawn from).
        simulation: the simulated-online settings (None: data without a truth).
        population: the simulated users (None without a simulation).
    """

    task: EvalTask
    labels: np.ndarray
    simulation: SimulationConfig | None = None
    population: EvalTask | None = None

    @classmethod
    def of(
        cls,
        cfg: DictConfig,
        settings: JobSettings,
        data: InteractionData,
        split: Split,
        corpus: np.ndarray,
        label_of: np.ndarray | None,
    ) -> Scoring:
        """Build the evaluation task and the simulated population of the fitted split.

        Args:
            cfg: the job config (`eval.simulation`).
            settings: the job's settings.
            data: the data set.
            split: the fitted split (labels remapped when the corpus remaps).
            corpus: the served corpus.
            label_of: pin -> label with `eval.hit_level=signature`; None: per pin.
        """
        window, exclude_train = settings.window, settings.exclude_train
        # window=val scores the validation window instead, for choosing hyperparameters without test.
        # The labels are those of the training-window corpus whatever the policy (the same users and
        # relevant sets in every arm); retrieval returns only the served corpus's pins.
        labels = training_window_corpus(split)
        task = build_eval_task(split, labels, window=window, exclude_train=exclude_train, label_of=label_of)
        task = served_from(task, corpus)
        simulation = simulation_config(cfg, data)
        if simulation is None:
            return cls(task, labels)
        # the simulated users are a fixed sample of the window's active users, the same for every arm
        population = build_simulation_task(
            split, corpus, simulation.users, simulation.seed, window, exclude_train, label_of
        )
        return cls(task, labels, simulation, population)


def run_job(cfg: DictConfig, run_dir: Path, loggers: JobLoggers) -> JobResult:
    """Run one configured job and return its metrics (written by the caller).

    On ranks other than 0 of a multi-process job, only the fit runs (it is collective); the
    result is empty.

    Args:
        cfg: the composed job config.
        run_dir: the job's directory (the model artifact goes there).
        loggers: where training curves go.
    """
    settings = JobSettings.of(cfg)  # every setting that can be checked without data fails here
    # the retriever's module first: a job imports only the code its model uses, and torch is seeded
    # (ebr.training.setup) only when that code loaded it
    retriever_class(cfg.model)
    with stage("data (loaded or generated) and split"):
        data, split = seeded_data_and_split(cfg)
    settings.policy.budget(data.pins.n_rows)  # a count larger than the data's pins
    label_of = settings.label_of(data)
    fingerprint = data_fingerprint(data)
    trained = settings.trained_model(data, fingerprint)  # a model trained on other data fails here
    # the refit protocol (eval.refit, ebr/retrieval/refit.py): the split fitted and scored is
    # train+val -> test under refit; tuning baselines choose on the unmerged cut
    with stage("fitted windows and serving corpus"):
        windows = fit_windows(
            hydra.utils.instantiate(cfg.split), data, split, settings.window, cfg.eval.refit
        )
        tuned_on = None if windows.tuning is None else windows.tuning.split
        step = corpus_step(settings.policy, data, windows.split, settings.window, tuned_on, trained)
    data, split = step.data, step.split
    if cfg.features.history:
        data = with_history(data, split, cfg.features.history_length)
    scoring = Scoring.of(cfg, settings, data, split, step.fitted.corpus.pins, label_of)
    context = fit_context(cfg, run_dir, loggers, step, data, fingerprint, scoring.labels)
    retriever: Retriever = hydra.utils.instantiate(cfg.model)
    with stage(f"{'load' if settings.checkpoint is not None else 'fit'} {type(retriever).__name__}"):
        reuse = fit_or_load(retriever, settings, cfg, data, split, context)
    if not is_rank_zero():
        return JobResult({})
    with stage("evaluation"):
        metrics = _evaluate(retriever, scoring, settings, data, split)
        metrics.update(_reference(scoring, settings.ks, data, split, context))
    metrics.update(task_counts(scoring.task))
    metrics.update(split_counts(split))
    metrics.update(windows.metrics())
    metrics.update(_corpus_metrics(step.fitted, data, settings, label_of))
    metrics["data/duplicate_rows"] = float(data.duplicate_rows)
    metrics.update(
        serving_warnings(
            len(step.fitted.corpus.pins), max(settings.ks), settings.interests.n_interests, data.n_interests
        )
    )
    info: dict[str, Any] = {
        "data_name": data.name,
        "data_source": data.source,
        "data_fingerprint": fingerprint,
    }
    if settings.checkpoint is not None:
        info["eval_only"] = {"ckpt_path": str(settings.checkpoint)}
    if reuse is not None:
        info["model_cache"] = reuse
    info.update(retriever.info())  # what it read besides the data (e.g. the two-tower's ID snapshot)
    return JobResult(metrics, info=info)


def fit_context(
    cfg: DictConfig,
    run_dir: Path,
    loggers: JobLoggers,
    step: CorpusStep,
    data: InteractionData,
    fingerprint: str,
    negative_pool: np.ndarray,
) -> FitContext:
    """What the job gives its retriever besides the data.

    Args:
        cfg: the job config (`seed`).
        run_dir: the job's directory.
        loggers: the job's loggers (their Lightning loggers).
        step: the job's corpus step (the served corpus; the tuning window's split and corpus).
        data: the data as the retriever receives it.
        fingerprint: the data's fingerprint.
        negative_pool: the training window's corpus, whatever the serving policy: one model serves
            every corpus.
    """
    tuned = step.tuning
    return FitContext(
        corpus=step.fitted.corpus.pins,
        run_dir=Path(run_dir),
        loggers=loggers.lightning,
        seed=cfg.seed,
        # tuning baselines choose over the same policy's corpus at the validation window's start
        tuning=None if tuned is None else TuningWindow(tuned.split, tuned.corpus.pins),
        artifact_info={
            "data_source": data.source,
            "data_fingerprint": fingerprint,
            "image_signature": feature_level(data.pins),
        },
        negative_pool=negative_pool,
    )


def fit_or_load(
    retriever: Retriever,
    settings: JobSettings,
    cfg: DictConfig,
    data: InteractionData,
    split: Split,
    context: FitContext,
) -> dict[str, Any] | None:
    """Fit the retriever, load the saved model an evaluation-only job serves, or go through the model
    cache; return what run.json records of the cache (None without one).

    Args:
        retriever: the job's retriever.
        settings: the job's settings (its checkpoint and cache).
        cfg: the job config (the cache's key reads it).
        data: the data as the retriever receives it.
        split: the fitted split.
        context: the job's fit context.
    """
    if settings.cache is not None:
        return settings.cache.fit_or_load(retriever, cfg, data, split, context)
    if settings.checkpoint is None:
        retriever.fit(data, split, context)
    else:
        retriever.load(settings.checkpoint, data, split)
    return None


def check_hit_level(level: object) -> str:
    """`eval.hit_level`, checked: "pin" or "signature"."""
    if level not in HIT_LEVELS:
        raise ValueError(f"eval.hit_level must be one of {', '.join(HIT_LEVELS)}, got {level!r}")
    return str(level)


def _evaluate(
    retriever: Retriever, scoring: Scoring, settings: JobSettings, data: InteractionData, split: Split
) -> dict[str, float]:
    """The fitted retriever's metrics: offline on the evaluation task, online on the simulated
    population, per interest (`serving.interest_metrics`), its own figures and the time it took.

    Args:
        retriever: the fitted retriever.
        scoring: the task and population it is scored on.
        settings: the job's settings (`eval.ks`, the interest keys).
        data: the data set.
        split: the fitted split.
    """
    task, population, simulation, ks = scoring.task, scoring.population, scoring.simulation, settings.ks
    started = time.perf_counter()
    retrieved = retriever.retrieve(task, max(ks))
    metrics = evaluate_ranking(task, retrieved, ks)
    # the retriever's own metrics (e.g. its index's recall) are those of the evaluation task's queries
    own = retriever.own_metrics()
    online, shown = _online(retriever, population, data, simulation)
    metrics.update(online)
    interests = settings.interests
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
    return metrics


def _reference(
    scoring: Scoring, ks: list[int], data: InteractionData, split: Split, context: FitContext
) -> dict[str, float]:
    """The reference row every report compares against: the most engaged pins, on the same task
    (`popularity/<metric>`)."""
    reference = Popularity()
    reference.fit(data, split, context)
    popular = evaluate_ranking(scoring.task, reference.retrieve(scoring.task, max(ks)), ks)
    popular.update(_online(reference, scoring.population, data, scoring.simulation)[0])
    return {f"{POPULARITY_PREFIX}{key}": value for key, value in popular.items()}


def _corpus_metrics(
    served: ServedSplit, data: InteractionData, settings: JobSettings, label_of: np.ndarray | None
) -> dict[str, float]:
    """`corpus/size`, `corpus/duplicates_removed`, `corpus/recall_ceiling`, `corpus/new_pin_share`."""
    window, corpus = settings.window, served.corpus
    metrics = corpus.metrics()
    metrics["corpus/recall_ceiling"] = recall_ceiling(
        served.split, corpus.pins, window, settings.exclude_train, label_of
    )
    metrics["corpus/new_pin_share"] = new_pin_share(
        served.engaged, creation_times(data), corpus.serving_time, window
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
