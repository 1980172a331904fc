"""The one protocol every model follows: fit on the split (or load a saved model), then retrieve for
the evaluation task.

A job never names a model: it asks the model's class whether it serves saved models (`loadable`,
read from the config before any data work, `retriever_class`), then fits or loads, retrieves, and
records the retriever's `own_metrics` and `info`. A retriever that saves no model takes `load` and
`info` from `FittedPerJob`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, cast, runtime_checkable

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from ebr.data.schema import InteractionData, Split
from ebr.evaluation.task import EvalTask


@dataclass(frozen=True)
class TuningWindow:
    """Where a tuning retriever chooses its hyperparameters: each candidate is fitted on
    `split.train` and scored on `split.val` over `corpus`.

    Args:
        split: the split tuned on (under the refit protocol, the cut before validation was merged).
        corpus: the pins the validation task retrieves from (`split.train`'s engaged pins).
    """

    split: Split
    corpus: np.ndarray


@dataclass(frozen=True)
class FitContext:
    """What a job gives a retriever besides the data.

    Args:
        corpus: the serving corpus (sorted pin ids), chosen once per job: the pins tuning
            retrieves from.
        run_dir: where a retriever writes what it saves (the two-tower `model.pt`).
        loggers: Lightning loggers for training curves (empty when nothing is logged, e.g. on
            ranks other than 0).
        seed: the job's training seed.
        tuning: where hyperparameters are chosen when that is not the fitted split itself: under
            the refit protocol `fit` receives train+val as `split.train`, and tuning still runs
            train -> val on this window, after which the chosen value is refitted on `split`.
            None: tune on the fitted split (`split.train` -> `split.val` over `corpus`).
        artifact_info: what a saved model records about its training data (the data's source and
            fingerprint, the `image_signature` feature's level), so it is only served on that data.
        negative_pool: the pins random training negatives are drawn from (None: `corpus`). The
            pipeline passes the training window's corpus, so that what a model learns does not
            depend on the serving corpus a job is scored on.
    """

    corpus: np.ndarray
    run_dir: Path
    loggers: list[Any] = field(default_factory=list)
    seed: int = 0
    tuning: TuningWindow | None = None
    artifact_info: dict[str, Any] = field(default_factory=dict)
    negative_pool: np.ndarray | None = None

    @property
    def negatives(self) -> np.ndarray:
        """The pins random training negatives are drawn from: `negative_pool`, else `corpus`."""
        return self.corpus if self.negative_pool is None else self.negative_pool

    def tuning_window(self, split: Split) -> TuningWindow:
        """The window to tune on when fitting `split`: `tuning`, or else `split` over `corpus`.

        Args:
            split: the split being fitted.
        """
        return self.tuning if self.tuning is not None else TuningWindow(split, self.corpus)


@runtime_checkable
class Retriever(Protocol):
    """A model that retrieves pins for the users of an evaluation task.

    Attributes:
        loadable: whether the model saves an artifact that `load` serves in another job
            (`eval_only=true`, the model cache); a class attribute, so a job reads it from the
            config (`retriever_class`) before any data work.
    """

    loadable: ClassVar[bool]

    def fit(self, data: InteractionData, split: Split, context: FitContext) -> None:
        """Fit on `split.train`; when tuning, first choose hyperparameters on
        `context.tuning_window(split)` (its `split.val`).

        Args:
            data: the data set (feature tables; `data.events` must not be read past the split).
            split: the time split; `split.test` must never be read. Under the refit protocol
                `split.train` is train+val and `split.val` is empty.
            context: the job's corpus, run directory, loggers and tuning window.
        """
        ...

    def load(
        self,
        artifact: Path,
        data: InteractionData,
        split: Split,
        training_metrics: Mapping[str, float] | None = None,
    ) -> None:
        """Serve a saved model instead of fitting (only when `loadable`).

        Args:
            artifact: the saved model file.
            data: the data set it is served on.
            split: the fitted split (`split.train` is what serving may read of the events).
            training_metrics: the statistics of the training that saved it, reported as this
                job's `own_metrics` (the model cache keeps them); None: none are reported.

        Raises:
            ValueError: when the retriever saves no model (`loadable` is false).
        """
        ...

    def retrieve(self, task: EvalTask, k: int) -> np.ndarray:
        """Top-k pins per evaluated user.

        Args:
            task: users, corpus and exclusions.
            k: results per user.

        Returns:
            (len(task.user_ids), k) int64 corpus pin ids, best first, excluded pins removed, -1 padded.
        """
        ...

    def own_metrics(self) -> dict[str, float]:
        """The retriever's own figures: training statistics, tuning choices and scores (tune/...),
        the serving index's recall against exact search. Empty when it has none."""
        ...

    def info(self) -> dict[str, Any]:
        """What run.json records of the fit besides the metrics and the data (e.g. the two-tower's
        ID embedding snapshot). Empty when there is nothing."""
        ...


class FittedPerJob:
    """`loadable`, `load` and `info` of a retriever that saves no model: it is fitted in every job
    that uses it (the baselines), and records nothing besides its metrics."""

    loadable: ClassVar[bool] = False

    def load(
        self,
        artifact: Path,
        data: InteractionData,
        split: Split,
        training_metrics: Mapping[str, float] | None = None,
    ) -> None:
        """Refuse: there is no saved model to serve (see `Retriever.load`)."""
        raise ValueError(
            f"{type(self).__name__} saves no model, so it cannot serve {artifact}: it is fitted in every job"
        )

    def info(self) -> dict[str, Any]:
        """Nothing (see `Retriever.info`)."""
        return {}


def retriever_class(model: Mapping[str, Any]) -> type[Retriever]:
    """The retriever class a `model` config builds, found without building it.

    Args:
        model: the job's `model` node (its `_target_`).
    """
    return cast(type[Retriever], hydra.utils.get_class(str(model["_target_"])))


def checkpoint_of(cfg: DictConfig) -> Path | None:
    """The model file an evaluation-only job serves (None: the job trains); checked before any data work.

    Args:
        cfg: the job config (`eval_only`, `ckpt_path`, `model`).

    Raises:
        ValueError: `ckpt_path` without eval_only, eval_only with a model that saves none (its
            retriever is not `loadable`), or a `ckpt_path` that does not name a model.pt.
    """
    ckpt_path = OmegaConf.select(cfg, "ckpt_path", default=None)
    if not OmegaConf.select(cfg, "eval_only", default=False):
        if ckpt_path:
            raise ValueError(f"ckpt_path={ckpt_path} is read only with eval_only=true (this job would train)")
        return None
    retriever = retriever_class(cfg.model)
    if not retriever.loadable:
        raise ValueError(
            f"eval_only=true serves a saved model, but {retriever.__name__} (model {cfg.model._target_})"
            " saves none: it is fitted in every job; evaluate a model that saves one (model=two_tower)"
        )
    # imported here: the saved model's reader loads torch and torchrec, which a fitting job of a
    # baseline never needs (experiments/benchmark.md, "Start-up")
    from ebr.serving.checkpoint import resolve_checkpoint

    return resolve_checkpoint(ckpt_path)
