"""One job as the data flow: data -> split -> corpus -> task -> fit -> retrieve -> evaluate -> metrics.

Every model is a Retriever (ebr.retrieval), so this file has no model-specific branch. The entry
point (ebr.train, through ebr.app and ebr.runs) wraps it with skip/resume, failure records,
loggers and the rank-0 guard.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from ebr.data.history import with_history
from ebr.data.schema import InteractionData, Split
from ebr.evaluation.protocol import evaluate_online, evaluate_ranking, task_counts
from ebr.evaluation.simulation import SimulationConfig
from ebr.evaluation.task import EvalTask, build_eval_task, build_simulation_task
from ebr.retrieval.popularity import Popularity
from ebr.retrieval.protocol import FitContext, Retriever
from ebr.retrieval.refit import fit_windows
from ebr.runs import JobLoggers, JobResult, is_rank_zero
from ebr.serving.corpus import training_window_corpus
from ebr.training.setup import seeded_data_and_split

POPULARITY_PREFIX = "popularity/"


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
    data, split = seeded_data_and_split(cfg)
    # -- refit protocol (eval.refit, ebr/retrieval/refit.py): from here on `split` is the split fitted
    # and scored (train+val -> test under refit); tuning baselines choose on `windows.tuning`
    windows = fit_windows(hydra.utils.instantiate(cfg.split), data, split, cfg.eval.window, cfg.eval.refit)
    split = windows.split
    # -- end of the refit protocol
    if cfg.features.history:
        data = with_history(data, split, cfg.features.history_length)
    corpus = training_window_corpus(split)
    # window=val scores the validation window instead, for choosing hyperparameters without test
    task = build_eval_task(split, corpus, window=cfg.eval.window, exclude_train=cfg.eval.exclude_train)
    ks = list(cfg.eval.ks)
    simulation = simulation_config(cfg, data)
    population = None
    if simulation is not None:
        # the simulated users are a fixed sample of the window's active users, the same for every arm
        population = build_simulation_task(
            split, corpus, simulation.users, simulation.seed, cfg.eval.window, cfg.eval.exclude_train
        )
    context = FitContext(
        corpus=corpus, run_dir=Path(run_dir), loggers=loggers.lightning, seed=cfg.seed, tuning=windows.tuning
    )

    retriever: Retriever = hydra.utils.instantiate(cfg.model)
    retriever.fit(data, split, context)
    if not is_rank_zero():
        return JobResult({})

    started = time.perf_counter()
    metrics = evaluate_ranking(task, retriever.retrieve(task, max(ks)), ks)
    # the retriever's own metrics (e.g. its index's recall) are those of the evaluation task's queries
    own = retriever.own_metrics()
    metrics.update(_online(retriever, population, data, simulation))
    seconds = time.perf_counter() - started
    metrics["eval/seconds"] = seconds
    metrics["eval/users_per_second"] = len(task.user_ids) / max(seconds, 1e-9)
    metrics.update(own)

    # the reference row every report compares against: the most engaged pins, on the same task
    reference = Popularity()
    reference.fit(data, split, context)
    popular = evaluate_ranking(task, reference.retrieve(task, max(ks)), ks)
    popular.update(_online(reference, population, data, simulation))
    metrics.update({f"{POPULARITY_PREFIX}{key}": value for key, value in popular.items()})
    metrics.update(task_counts(task))
    metrics.update(split_counts(split))
    metrics.update(windows.metrics())
    info = {"data_name": data.name, "data_source": data.source}
    # a retriever may say what it read besides the data (e.g. the two-tower's ID snapshot)
    own_info = getattr(retriever, "own_info", None)
    if callable(own_info):
        info.update(own_info())
    return JobResult(metrics, info=info)


def _online(
    retriever: Retriever,
    population: EvalTask | None,
    data: InteractionData,
    simulation: SimulationConfig | None,
) -> dict[str, float]:
    """The simulated online metrics of a fitted retriever (none for data without a truth)."""
    if population is None or simulation is None or data.truth is None:
        return {}
    retrieved = retriever.retrieve(population, simulation.candidates)
    return evaluate_online(data.truth, population, retrieved, simulation)


def split_counts(split: Split) -> dict[str, Any]:
    """Engagements per window (`data/<window>_engagements`) and the split's cold counts (`data/<key>`)."""
    counts = {
        f"data/{name}_engagements": float(len(getattr(split, name)))
        for name in ("pretrain", "train", "val", "test")
    }
    counts.update({f"data/{name}": float(value) for name, value in split.cold.items()})
    return counts
