"""Throughput benchmark of ebr: world generation, training, evaluation and the serving index.

A benchmark, not a test: it measures and prints, it asserts nothing. Every figure comes from one
run on one machine, so ratios between rows (e.g. DHEN vs MLP training speed) are comparable.

What it reports:
  - world generation: events (impressions included) and engagements per second of `generate_world`
    on the chosen world (no cache), median of `--repeats` runs;
  - per crossing option (`conf/model/crossing/*.yaml`): parameter count of the whole two-tower
    model (embedding tables + dense part) and of the dense part alone; training examples per second
    over `--train-batches` batches after `--warmup` batches, through the real TwoTowerModule + DMP +
    Lightning path; evaluation users per second of `ebr.pipeline.evaluate_artifact` (embed corpus
    and users, flat faiss search, metrics, simulated online metrics);
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

import ebr.train  # noqa: F401  (registers the config schema and resolvers before composing)

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "conf"
CROSSINGS = tuple(sorted(p.stem for p in (CONF / "model" / "crossing").glob("*.yaml")))
DATA_OPTIONS = ("synthetic", "synthetic_tiny", "synthetic_small")
SEARCH_K = 100


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and validate the command line; `--quick` fills in the tiny defaults.

    Args:
        argv: arguments without the program name (None: sys.argv[1:]).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=DATA_OPTIONS, default=None, help="world (default synthetic)")
    parser.add_argument("--crossings", default=",".join(CROSSINGS), help="comma-separated crossings")
    parser.add_argument("--repeats", type=int, default=None, help="world generations (median; default 3)")
    parser.add_argument("--train-batches", type=int, default=None, help="timed batches (default 200)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed batches before timing")
    parser.add_argument("--threads", type=int, default=1, help="torch and faiss threads (default 1)")
    parser.add_argument("--quick", action="store_true", help="tiny world, 20 batches, 1 repeat")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    quick = {"data": "synthetic_tiny", "repeats": 1, "train_batches": 20}
    full = {"data": "synthetic", "repeats": 3, "train_batches": 200}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.crossings = [c.strip() for c in args.crossings.split(",") if c.strip()]
    unknown = [c for c in args.crossings if c not in CROSSINGS]
    if unknown or not args.crossings:
        parser.error(f"--crossings: unknown or empty {unknown}; options are {list(CROSSINGS)}")
    for name in ("repeats", "train_batches", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    return args


def compose_config(args: argparse.Namespace, run_dir: Path, overrides: Sequence[str] = ()) -> Any:
    """The `ebr-train` config for this benchmark, composed through Hydra's compose API.

    Args:
        args: the parsed command line.
        run_dir: stands in for Hydra's run directory (the trainer's root dir).
        overrides: extra Hydra overrides, e.g. ["model/crossing=dhen"].
    """
    from hydra import compose, initialize_config_dir

    steps = args.warmup + args.train_batches
    base = [
        f"data={args.data}",
        "logger=none",
        f"num_threads={args.threads}",
        "trainer.enable_progress_bar=false",
        f"trainer.default_root_dir={run_dir}",
        # bounded by steps, not epochs; validation would only add untimed noise
        f"++trainer.max_steps={steps}",
        "trainer.max_epochs=-1",
        "++trainer.limit_val_batches=0",
    ]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=[*base, *overrides])


def machine_info(threads: int) -> dict[str, Any]:
    """CPU count, thread settings and library versions of this run."""
    import faiss
    import numpy as np
    import pytorch_lightning as pl
    import torch
    import torchrec

    return {
        "cpu_count": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "faiss_threads": threads,
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchrec": torchrec.__version__,
        "lightning": pl.__version__,
        "faiss": faiss.__version__,
        "numpy": np.__version__,
    }


def bench_world(cfg: Any, repeats: int) -> tuple[dict[str, float], Any]:
    """Generate the configured world `repeats` times without cache; returns (figures, the last world).

    Args:
        cfg: the composed config (its `data.config` node builds the WorldConfig).
        repeats: number of generations; the median time is reported.
    """
    import hydra

    from ebr.data.world import generate_world

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
    figures = {
        "events": float(events),
        "engagements": float(engagements),
        "seconds_median": median,
        "seconds": seconds,
        "events_per_second": events / median,
        "engagements_per_second": engagements / median,
    }
    return figures, data


def count_parameters(model: Any) -> dict[str, float]:
    """Parameters of an unsharded two-tower model: total, embedding tables, and the dense rest.

    Args:
        model: a TwoTowerModel as `ebr.models.artifact.build_model` returns it.
    """
    from torchrec.modules.embedding_modules import EmbeddingBagCollection

    total = sum(p.numel() for p in model.parameters())
    tables = sum(
        p.numel() for m in model.modules() if isinstance(m, EmbeddingBagCollection) for p in m.parameters()
    )
    return {
        "params_total": float(total),
        "params_embedding": float(tables),
        "params_dense": float(total - tables),
    }


def _timer_callback(warmup: int, examples_per_batch: int) -> Any:
    """A Lightning callback timing the batches after the first `warmup` ones (loading included)."""
    import pytorch_lightning as pl

    class BatchTimer(pl.Callback):
        def __init__(self) -> None:
            self.batches = 0
            self.started: float | None = None
            self.finished: float | None = None
            self.timed = 0

        def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            if warmup == 0:
                self.started = time.perf_counter()

        def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *_: Any) -> None:
            self.batches += 1
            now = time.perf_counter()
            if self.batches == warmup:
                self.started = now
            elif self.batches > warmup:
                self.timed += 1
                self.finished = now

        def examples_per_second(self) -> float:
            if self.started is None or self.finished is None or self.timed == 0:
                raise RuntimeError(f"training ran {self.batches} batches, fewer than warm-up + 1")
            return self.timed * examples_per_batch / (self.finished - self.started)

    return BatchTimer()


def bench_crossing(
    cfg: Any, data: Any, split: Any, corpus: Any, task: Any, run_dir: Path, warmup: int
) -> dict[str, Any]:
    """Parameters, training and evaluation throughput of one composed two-tower config.

    The pieces are built as `ebr.pipeline.train_two_tower` builds them; only the trainer gets
    a timing callback, and the step budget comes from the config.

    Args:
        cfg: the composed config (model/crossing chosen by its overrides).
        data: the world.
        split: its temporal split.
        corpus: the serving corpus (training-window pins).
        task: the evaluation task.
        run_dir: where the artifact is saved.
        warmup: untimed batches at the start of training.
    """
    import hydra
    import pytorch_lightning as pl

    from ebr.data.datamodule import TwoTowerDataModule
    from ebr.models.artifact import build_model, save_artifact
    from ebr.models.loss import SampledSoftmaxLoss
    from ebr.pipeline import evaluate_artifact, make_frequency, resolve_features, tower_specs
    from ebr.training.module import TwoTowerModule

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    features = resolve_features(cfg, data)
    user_spec, pin_spec = tower_specs(data, features)
    figures: dict[str, Any] = count_parameters(build_model(cfg.model, user_spec, pin_spec))
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
    timer = _timer_callback(warmup, train_cfg.batch_size)
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, logger=False, callbacks=[timer])
    trainer.fit(module, datamodule=datamodule)
    figures["train_batches"] = float(timer.timed)
    figures["train_examples_per_second"] = timer.examples_per_second()
    artifact = run_dir / "model.pt"
    save_artifact(artifact, cfg.model, user_spec, pin_spec, features, module.export_state_dict())
    metrics = evaluate_artifact(artifact, data, task, cfg)
    figures["eval_users"] = float(len(task.user_ids))
    figures["eval_seconds"] = metrics["eval/seconds"]
    figures["eval_users_per_second"] = metrics["eval/users_per_second"]
    return figures


def bench_index(
    artifact: Path, data: Any, task: Any, configs: dict[str, Any], repeats: int
) -> dict[str, dict[str, float]]:
    """Build time, search users per second and ANN recall of each index over the same embeddings.

    Args:
        artifact: the saved model whose towers embed the corpus and the users.
        data: the world.
        task: the evaluation task (its corpus and users).
        configs: index name -> IndexConfig; must include "flat", the exact reference.
        repeats: searches per index; the median time is reported.
    """
    from ebr.data.batching import FeatureGatherer
    from ebr.evaluation.metrics import ann_recall
    from ebr.models.artifact import load_artifact
    from ebr.serving.embed import embed_rows, tower_encoder
    from ebr.serving.index import ItemIndex

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
        build = time.perf_counter() - started
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            found[name], _ = index.search(queries, k)
            seconds.append(time.perf_counter() - started)
        search = statistics.median(seconds)
        figures[name] = {
            "build_seconds": build,
            "search_seconds": search,
            "search_users_per_second": len(queries) / search,
        }
    for name in configs:
        figures[name][f"ann_recall@{SEARCH_K}"] = ann_recall(found[name], found["flat"], k)
        figures[name]["speedup_vs_flat"] = (
            figures[name]["search_users_per_second"] / figures["flat"]["search_users_per_second"]
        )
    return figures


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).rjust(width) for cell, width in zip(row, widths)) for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


def format_report(results: dict[str, Any]) -> str:
    """The human-readable tables of a benchmark's results.

    Args:
        results: what `run_benchmark` returns.
    """
    machine, settings, world = results["machine"], results["settings"], results["world"]
    lines = [
        f"machine: {machine['cpu_count']} cpus ({machine['cpus_available']} available), "
        f"torch threads {machine['torch_threads']}, faiss threads {machine['faiss_threads']}, "
        f"OMP_NUM_THREADS={machine['omp_num_threads_env']}; python {machine['python']}, "
        f"torch {machine['torch']}, torchrec {machine['torchrec']}, lightning {machine['lightning']}, "
        f"faiss {machine['faiss']}, numpy {machine['numpy']}",
        "",
        f"world generation (data={settings['data']}, generate_world without cache, median of "
        f"{settings['repeats']}): {_number(world['events'])} events, {_number(world['engagements'])} "
        f"engagements in {world['seconds_median']:.2f} s -> {_number(world['events_per_second'])} "
        f"events/s, {_number(world['engagements_per_second'])} engagements/s",
        "",
        f"two-tower model per crossing (batch {settings['batch_size']}, {settings['warmup']} warm-up + "
        f"{settings['train_batches']} timed batches; evaluation = evaluate_artifact, flat index, "
        f"{_number(settings['eval_users'])} users, corpus {_number(settings['corpus'])}; "
        "mlp is the default run)",
    ]
    header = ["crossing", "params", "dense params", "train ex/s", "x mlp", "eval users/s", "x mlp", "eval s"]
    rows = []
    for name, row in results["crossings"].items():
        rows.append(
            [
                name,
                f"{row['params_total']:,.0f}",
                f"{row['params_dense']:,.0f}",
                _number(row["train_examples_per_second"]),
                f"{row['train_vs_mlp']:.2f}" if "train_vs_mlp" in row else "-",
                _number(row["eval_users_per_second"]),
                f"{row['eval_vs_mlp']:.2f}" if "eval_vs_mlp" in row else "-",
                f"{row['eval_seconds']:.2f}",
            ]
        )
    lines += _table(header, rows)
    index = results["index"]
    lines += [
        "",
        f"index search alone ({index['model']} embeddings, top {SEARCH_K}, {_number(settings['eval_users'])} "
        f"users, median of {settings['repeats']}):",
    ]
    header = ["index", "build s", "search users/s", "x flat", f"ann_recall@{SEARCH_K}"]
    rows = [
        [
            name,
            f"{row['build_seconds']:.3f}",
            _number(row["search_users_per_second"]),
            f"{row['speedup_vs_flat']:.2f}",
            f"{row[f'ann_recall@{SEARCH_K}']:.4f}",
        ]
        for name, row in index["kinds"].items()
    ]
    lines += _table(header, rows)
    return "\n".join(lines)


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement of one benchmark run, as a JSON-ready dict.

    Args:
        args: the parsed command line.
    """
    import faiss
    import hydra
    import torch
    import torch.distributed as dist

    from ebr.evaluation.task import build_eval_task
    from ebr.serving.corpus import training_window_corpus
    from ebr.serving.index import IndexConfig
    from ebr.training.distributed import ensure_process_group

    torch.set_num_threads(args.threads)
    # faiss has its own OpenMP pool; pin it too so search figures use the same thread budget
    faiss.omp_set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="ebr-benchmark-") as tmp:
        root = Path(tmp)
        cfg = compose_config(args, root)
        world, data = bench_world(cfg, args.repeats)
        split = hydra.utils.instantiate(cfg.split)(data)
        corpus = training_window_corpus(split)
        task = build_eval_task(split, corpus, window=cfg.eval.window, exclude_train=cfg.eval.exclude_train)
        crossings: dict[str, dict[str, Any]] = {}
        created = ensure_process_group(root)
        try:
            for name in args.crossings:
                run_dir = root / name
                run_dir.mkdir()
                crossing_cfg = compose_config(args, run_dir, [f"model/crossing={name}"])
                crossings[name] = bench_crossing(
                    crossing_cfg, data, split, corpus, task, run_dir, args.warmup
                )
        finally:
            if created and dist.is_initialized():
                dist.destroy_process_group()
        if "mlp" in crossings:
            for row in crossings.values():
                row["train_vs_mlp"] = (
                    row["train_examples_per_second"] / crossings["mlp"]["train_examples_per_second"]
                )
                row["eval_vs_mlp"] = row["eval_users_per_second"] / crossings["mlp"]["eval_users_per_second"]
        source = "mlp" if "mlp" in crossings else args.crossings[0]
        hnsw = hydra.utils.instantiate(compose_config(args, root, ["index=hnsw"]).index)
        kinds = bench_index(
            root / source / "model.pt",
            data,
            task,
            {"flat": IndexConfig(kind="flat"), "hnsw": hnsw},
            args.repeats,
        )
    settings = {
        "data": args.data,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "train_batches": args.train_batches,
        "threads": args.threads,
        "batch_size": int(cfg.train.batch_size),
        "eval_users": float(len(task.user_ids)),
        "corpus": float(len(corpus)),
    }
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
