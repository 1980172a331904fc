"""Throughput benchmark of ebr: world generation, training, evaluation and the serving index.

A benchmark, not a test: it measures and prints. Every figure comes from one run on one machine,
so ratios between rows (e.g. DHEN vs MLP training speed) are comparable.

What it reports:
  - world generation: events (impressions included) and engagements per second of `generate_world`
    on the chosen world (no cache), median of `--repeats` runs;
  - per crossing option (`conf/model/crossing/*.yaml`): parameter count of the whole two-tower
    model (embedding tables + dense part) and of the dense part alone; training examples per second
    over `--train-batches` batches after `--warmup` batches, through the real TwoTowerModule + DMP +
    Lightning path; evaluation users per second of the two-tower retriever's `retrieve` plus
    `evaluate_ranking` (embed corpus and users, flat faiss search, metrics, simulated online metrics);
  - flat vs HNSW index on the corpus with the mlp model's embeddings: users per second of the search
    alone (top 100, median of `--repeats`) and HNSW's `ann_recall@100` against the flat index.

Configs are composed through Hydra from `conf/` exactly as `ebr-train` composes them (`logger=none`,
plus overrides that bound the number of training steps). The mlp row is the default run.

Usage:
    python scripts/benchmark.py                                  # default world, every crossing
    python scripts/benchmark.py --quick                          # tiny world, 20 batches, 1 repeat
    python scripts/benchmark.py --crossings mlp,dhen --train-batches 100 --json /tmp/bench.json
    python scripts/benchmark.py --threads 2                      # torch and faiss threads
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import hydra
import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
import torchrec
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from torchrec.modules.embedding_modules import EmbeddingBagCollection

from ebr.config import register_schemas
from ebr.data.batching import FeatureGatherer
from ebr.data.schema import InteractionData, Split
from ebr.data.world import generate_world
from ebr.evaluation.protocol import evaluate_ranking
from ebr.evaluation.task import EvalTask, build_eval_task
from ebr.models.artifact import build_model, load_artifact
from ebr.models.features import resolve_features, tower_specs
from ebr.pipeline import simulation_config
from ebr.retrieval.protocol import FitContext
from ebr.serving.corpus import training_window_corpus
from ebr.serving.embed import embed_rows, tower_encoder
from ebr.serving.index import IndexConfig, ItemIndex
from ebr.serving.service import ann_recall
from ebr.training.distributed import ensure_process_group

CONF = Path(__file__).resolve().parent.parent / "conf"
# mlp (the default) first: the other rows are compared with it
CROSSINGS = tuple(
    sorted((p.stem for p in (CONF / "model" / "crossing").glob("*.yaml")), key=lambda c: (c != "mlp", c))
)
DATA_OPTIONS = ("synthetic", "synthetic_tiny", "synthetic_small")
SEARCH_K = 100
TIMING_FILE = "train_timing.json"
# printed columns: (header, result key, format)
CROSSING_COLUMNS = (
    ("params", "params_total", "{:,}"),
    ("dense params", "params_dense", "{:,}"),
    ("train ex/s", "train_examples_per_second", "{:,.0f}"),
    ("x mlp", "train_vs_mlp", "{:.2f}"),
    ("eval users/s", "eval_users_per_second", "{:,.0f}"),
    ("x mlp", "eval_vs_mlp", "{:.2f}"),
    ("eval s", "eval_seconds", "{:.2f}"),
)
INDEX_COLUMNS = (
    ("build s", "build_seconds", "{:.3f}"),
    ("search users/s", "search_users_per_second", "{:,.0f}"),
    ("x flat", "speedup_vs_flat", "{:.2f}"),
    (f"ann_recall@{SEARCH_K}", f"ann_recall@{SEARCH_K}", "{:.4f}"),
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and validate the command line; `--quick` fills in the tiny defaults.

    Args:
        argv: arguments without the program name (None: sys.argv[1:]).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=DATA_OPTIONS, default=None, help="world (default synthetic)")
    parser.add_argument("--crossings", default=",".join(CROSSINGS), help="comma-separated (default all)")
    parser.add_argument("--repeats", type=int, default=None, help="world generations, searches (default 3)")
    parser.add_argument("--train-batches", type=int, default=None, help="timed batches (default 200)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed first batches (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch and faiss threads (default 1)")
    parser.add_argument("--quick", action="store_true", help="tiny world, 20 batches, 1 repeat")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    defaults = {"data": "synthetic", "repeats": 3, "train_batches": 200}
    if args.quick:
        defaults = {"data": "synthetic_tiny", "repeats": 1, "train_batches": 20}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.crossings = [c.strip() for c in args.crossings.split(",") if c.strip()]
    unknown = [c for c in args.crossings if c not in CROSSINGS]
    if unknown or not args.crossings:
        parser.error(f"--crossings: unknown or empty {unknown}; the options are {list(CROSSINGS)}")
    for name in ("repeats", "train_batches", "warmup", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def compose_config(args: argparse.Namespace, run_dir: Path, overrides: Sequence[str] = ()) -> DictConfig:
    """The `ebr-train` config of this benchmark, composed through Hydra's compose API.

    Args:
        args: the parsed command line.
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
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=[*base, *overrides])


def machine_info(threads: int) -> dict[str, Any]:
    """CPU count, thread settings and library versions of this run.

    Args:
        threads: the faiss thread count set by `run_benchmark`.
    """
    versions = {m.__name__: m.__version__ for m in (torch, torchrec, pl, faiss, np)}
    return {
        "cpu_count": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "faiss_threads": threads,
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        **versions,
    }


def bench_world(cfg: DictConfig, repeats: int) -> tuple[dict[str, Any], InteractionData]:
    """Generate the configured world `repeats` times without cache; returns (figures, the last world).

    Args:
        cfg: the composed config (its `data.config` node builds the WorldConfig).
        repeats: number of generations; the median time is reported.
    """
    world_config = hydra.utils.instantiate(cfg.data.config)
    seconds, data = [], None
    for _ in range(repeats):
        data = None  # free the previous world before timing the next one
        gc.collect()
        started = time.perf_counter()
        data = generate_world(world_config)
        seconds.append(time.perf_counter() - started)
    median = statistics.median(seconds)
    events, engagements = len(data.events), len(data.engagements())
    figures = {"events": float(events), "engagements": float(engagements), "seconds": seconds}
    figures.update(
        seconds_median=median, events_per_second=events / median, engagements_per_second=engagements / median
    )
    return figures, data


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
        self.path.write_text(json.dumps({"batches": timed, "seconds": seconds, "examples_per_second": rate}))


def bench_crossing(
    cfg: DictConfig, data: InteractionData, split: Split, corpus: np.ndarray, task: EvalTask, run_dir: Path
) -> dict[str, Any]:
    """Parameters, training and evaluation throughput of one composed two-tower config.

    Fits the two-tower retriever and retrieves and scores the task, as `ebr-train` does; the
    composed trainer config carries the BatchTimer and the step budget.

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
    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # as run_job seeds before training
    retriever.fit(data, split, FitContext(corpus=corpus, run_dir=run_dir, seed=cfg.seed))
    timing = json.loads((run_dir / TIMING_FILE).read_text())
    figures.update(train_batches=timing["batches"], train_examples_per_second=timing["examples_per_second"])
    simulation = simulation_config(cfg, data)
    ks = list(cfg.eval.ks)
    depth = max(max(ks), simulation.candidates if simulation is not None else 0)
    started = time.perf_counter()
    retrieved = retriever.retrieve(task, depth)
    evaluate_ranking(task, retrieved, ks, truth=data.truth, simulation=simulation)
    seconds = time.perf_counter() - started
    figures.update(eval_seconds=seconds, eval_users_per_second=len(task.user_ids) / max(seconds, 1e-9))
    return figures


def bench_index(
    artifact: Path, data: InteractionData, task: EvalTask, configs: dict[str, IndexConfig], repeats: int
) -> dict[str, dict[str, float]]:
    """Build time, search users per second and ANN recall of each index over the same embeddings.

    Args:
        artifact: the saved model whose towers embed the corpus and the users.
        data: the world.
        task: the evaluation task (its corpus and users).
        configs: index name -> IndexConfig; must include "flat", the exact reference.
        repeats: searches per index; the median time is reported.
    """
    model, payload = load_artifact(artifact)
    features = payload["features"]
    pins = FeatureGatherer(data.pins, features["pin_sparse"], features["pin_dense"], "pins")
    users = FeatureGatherer(data.users, features["user_sparse"], features["user_dense"], "users")
    pin_embeddings = embed_rows(tower_encoder(model.pin_tower), pins, task.corpus)
    queries = embed_rows(tower_encoder(model.user_tower), users, task.user_ids)
    k = min(SEARCH_K, len(task.corpus))
    figures, found = {}, {}
    for name, config in configs.items():
        started = time.perf_counter()
        index = ItemIndex(pin_embeddings, task.corpus, config)
        build, seconds = time.perf_counter() - started, []
        for _ in range(repeats):
            started = time.perf_counter()
            found[name], _ = index.search(queries, k)
            seconds.append(time.perf_counter() - started)
        search = statistics.median(seconds)
        figures[name] = {"build_seconds": build, "search_seconds": search}
        figures[name]["search_users_per_second"] = len(queries) / search
    for name, row in figures.items():
        row[f"ann_recall@{SEARCH_K}"] = ann_recall(found[name], found["flat"], k)
        row["speedup_vs_flat"] = row["search_users_per_second"] / figures["flat"]["search_users_per_second"]
    return figures


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _table(first: str, rows: dict[str, dict[str, Any]], columns: Sequence[tuple[str, str, str]]) -> list[str]:
    """Right-aligned text table: one line per row, columns as (header, key, format); "-" when absent."""
    cells = [[first, *(header for header, _, _ in columns)]]
    cells += [
        [name, *(fmt.format(row[key]) if key in row else "-" for _, key, fmt in columns)]
        for name, row in rows.items()
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


def format_report(results: dict[str, Any]) -> str:
    """The human-readable tables of a benchmark's results.

    Args:
        results: what `run_benchmark` returns.
    """
    machine, settings, world = results["machine"], results["settings"], results["world"]
    versions = ", ".join(
        f"{name} {machine[name]}" for name in ("torch", "torchrec", "pytorch_lightning", "faiss")
    )
    lines = [
        f"machine: {machine['cpu_count']} cpus ({machine['cpus_available']} available), torch threads "
        f"{machine['torch_threads']}, faiss threads {machine['faiss_threads']}, OMP_NUM_THREADS="
        f"{machine['omp_num_threads_env']}; python {machine['python']}, {versions}, numpy {machine['numpy']}",
        "",
        f"world generation (data={settings['data']}, generate_world without cache, median of "
        f"{settings['repeats']}): {_number(world['events'])} events, {_number(world['engagements'])} "
        f"engagements in {world['seconds_median']:.2f} s -> {_number(world['events_per_second'])} "
        f"events/s, {_number(world['engagements_per_second'])} engagements/s",
        "",
        f"two-tower model per crossing (mlp = the default run): training batch {settings['batch_size']}, "
        f"{settings['warmup']} warm-up + {settings['train_batches']} timed batches; evaluation = "
        f"evaluate_artifact with the flat index, {_number(settings['eval_users'])} users, corpus "
        f"{_number(settings['corpus'])}",
    ]
    lines += _table("crossing", results["crossings"], CROSSING_COLUMNS)
    index = results["index"]
    lines += [
        "",
        f"index search alone ({index['model']} embeddings, top {SEARCH_K} for "
        f"{_number(settings['eval_users'])} users, median of {settings['repeats']}):",
    ]
    return "\n".join(lines + _table("index", index["kinds"], INDEX_COLUMNS))


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement of one benchmark run, as a JSON-ready dict.

    Args:
        args: the parsed command line.
    """
    torch.set_num_threads(args.threads)
    # faiss has its own OpenMP pool; pin it too so search figures use the same thread budget
    faiss.omp_set_num_threads(args.threads)
    crossings: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="ebr-benchmark-") as tmp:
        root = Path(tmp)
        cfg = compose_config(args, root)
        world, data = bench_world(cfg, args.repeats)
        split = hydra.utils.instantiate(cfg.split)(data)
        corpus = training_window_corpus(split)
        task = build_eval_task(split, corpus, window=cfg.eval.window, exclude_train=cfg.eval.exclude_train)
        created = ensure_process_group(root)
        try:
            for name in args.crossings:
                (root / name).mkdir()
                crossing_cfg = compose_config(args, root / name, [f"model/crossing={name}"])
                crossings[name] = bench_crossing(crossing_cfg, data, split, corpus, task, root / name)
        finally:
            if created and dist.is_initialized():
                dist.destroy_process_group()
        source = "mlp" if "mlp" in crossings else args.crossings[0]
        indexes = {"flat": IndexConfig()}
        indexes["hnsw"] = hydra.utils.instantiate(compose_config(args, root, ["index=hnsw"]).index)
        kinds = bench_index(root / source / "model.pt", data, task, indexes, args.repeats)
    if "mlp" in crossings:
        mlp = crossings["mlp"]
        for row in crossings.values():
            row["train_vs_mlp"] = row["train_examples_per_second"] / mlp["train_examples_per_second"]
            row["eval_vs_mlp"] = row["eval_users_per_second"] / mlp["eval_users_per_second"]
    settings = {
        name: getattr(args, name) for name in ("data", "repeats", "warmup", "train_batches", "threads")
    }
    settings.update(batch_size=int(cfg.train.batch_size), eval_users=len(task.user_ids), corpus=len(corpus))
    return {
        "machine": machine_info(args.threads),
        "settings": settings,
        "world": world,
        "crossings": crossings,
        "index": {"model": source, "kinds": kinds},
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print its tables and optionally write the JSON.

    Args:
        argv: arguments without the program name (None: sys.argv[1:]).
    """
    args = parse_args(argv)
    results = run_benchmark(args)
    print(format_report(results))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
