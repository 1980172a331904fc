"""Two-tower training and evaluation throughput per crossing, through the real `ebr-train` path.

Configs are composed through Hydra from `conf/` exactly as `ebr-train` composes them
(`logger=none`, plus overrides that bound the number of training steps and add the BatchTimer).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig
from torchrec.modules.embedding_modules import EmbeddingBagCollection

from ebr.config import register_schemas
from ebr.data.schema import InteractionData, Split
from ebr.evaluation.protocol import evaluate_ranking
from ebr.evaluation.task import EvalTask
from ebr.models.artifact import build_model
from ebr.models.features import resolve_features, tower_specs
from ebr.pipeline import simulation_config
from ebr.retrieval.protocol import FitContext

CONF = Path(__file__).resolve().parent.parent.parent / "conf"
TIMING_FILE = "train_timing.json"


def compose_config(args: argparse.Namespace, run_dir: Path, overrides: Sequence[str] = ()) -> DictConfig:
    """The `ebr-train` config of this benchmark, composed through Hydra's compose API.

    Args:
        args: the parsed command line (data, threads, warmup, train_batches).
        run_dir: stands in for Hydra's run directory (trainer root, timing file).
        overrides: extra Hydra overrides, e.g. ["model/crossing=dhen"].
    """
    base = [
        f"data={args.data}",
        "logger=none",
        f"num_threads={args.threads}",
        "trainer.enable_progress_bar=false",
        f"trainer.default_root_dir={run_dir}",
        # a step budget instead of epochs; validation would only add untimed work
        f"++trainer.max_steps={args.warmup + args.train_batches}",
        "trainer.max_epochs=-1",
        "++trainer.limit_val_batches=0",
        f"++trainer.callbacks=[{{_target_:{__name__}.BatchTimer,warmup:{args.warmup},"
        f"batch_size:${{train.batch_size}},path:'{run_dir / TIMING_FILE}'}}]",
    ]
    register_schemas()
    # a caller (a test, an earlier compose) may have left Hydra initialised
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=[*base, *overrides])


def count_parameters(model: torch.nn.Module) -> dict[str, float]:
    """Parameters of an unsharded two-tower model: total, embedding tables, and the dense rest.

    Args:
        model: a TwoTowerModel as `ebr.models.artifact.build_model` returns it.
    """
    total = sum(p.numel() for p in model.parameters())
    tables = sum(
        p.numel() for m in model.modules() if isinstance(m, EmbeddingBagCollection) for p in m.parameters()
    )
    return {"params_total": total, "params_embedding": tables, "params_dense": total - tables}


class BatchTimer(pl.Callback):
    """Times the training batches after the first `warmup` (batch building included).

    Hydra builds it from the trainer config, so the retriever's fit runs unchanged; it reports
    through a file because the fit does not return its trainer.

    Args:
        warmup: untimed batches at the start.
        batch_size: examples per batch.
        path: where {"batches", "seconds", "examples_per_second"} is written when training ends.
    """

    def __init__(self, warmup: int, batch_size: int, path: str) -> None:
        self.warmup, self.batch_size, self.path = warmup, batch_size, Path(path)
        self.batches, self.started, self.finished = 0, 0.0, 0.0

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *_: Any) -> None:
        self.batches += 1
        self.finished = time.perf_counter()
        if self.batches == self.warmup:
            self.started = self.finished

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        timed, seconds = self.batches - self.warmup, self.finished - self.started
        if timed < 1:
            raise RuntimeError(f"training ran {self.batches} batches, no more than the {self.warmup} warm-up")
        rate = timed * self.batch_size / seconds
        self.path.write_text(
            json.dumps(
                {
                    "batches": timed,
                    "seconds": seconds,
                    "examples_per_second": rate,
                    "steps_per_second": timed / seconds,
                }
            )
        )


def fit_timed(cfg: DictConfig, data: InteractionData, split: Split, corpus: np.ndarray, run_dir: Path) -> Any:
    """Fit the configured two-tower retriever as `ebr-train` does; returns (retriever, timing).

    Args:
        cfg: the composed config (carries the BatchTimer and the step budget).
        data: the world.
        split: its temporal split.
        corpus: the serving corpus (the pool of random negatives).
        run_dir: where the artifact and the timing file go.
    """
    retriever = hydra.utils.instantiate(cfg.model)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # as run_job seeds before training
    retriever.fit(data, split, FitContext(corpus=corpus, run_dir=run_dir, seed=cfg.seed))
    return retriever, json.loads((run_dir / TIMING_FILE).read_text())


def bench_crossing(
    cfg: DictConfig, data: InteractionData, split: Split, corpus: np.ndarray, task: EvalTask, run_dir: Path
) -> dict[str, Any]:
    """Parameters, training and evaluation throughput of one composed two-tower config.

    Fits the two-tower retriever and retrieves and scores the task, as `ebr-train` does.

    Args:
        cfg: the composed config (its model/crossing chosen by the overrides).
        data: the world.
        split: its temporal split.
        corpus: the serving corpus (training-window pins).
        task: the evaluation task.
        run_dir: where the artifact and the timing file go.
    """
    retriever = hydra.utils.instantiate(cfg.model)
    specs = tower_specs(data, resolve_features(cfg.features, data))
    figures: dict[str, Any] = count_parameters(build_model(retriever.network_config, *specs))
    retriever, timing = fit_timed(cfg, data, split, corpus, run_dir)
    figures.update(
        train_batches=timing["batches"],
        train_examples_per_second=timing["examples_per_second"],
        train_steps_per_second=timing["steps_per_second"],
    )
    simulation = simulation_config(cfg, data)
    ks = list(cfg.eval.ks)
    depth = max(max(ks), simulation.candidates if simulation is not None else 0)
    started = time.perf_counter()
    retrieved = retriever.retrieve(task, depth)
    evaluate_ranking(task, retrieved, ks, truth=data.truth, simulation=simulation)
    seconds = time.perf_counter() - started
    figures.update(eval_seconds=seconds, eval_users_per_second=len(task.user_ids) / max(seconds, 1e-9))
    return figures
