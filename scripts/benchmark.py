"""Throughput benchmark of ebr: world generation, training, evaluation, kernels and the serving index.

A benchmark, not a test: it measures and prints. Every figure comes from one run on one machine,
so ratios between rows (e.g. DHEN vs MLP training speed, HNSW vs flat) are comparable.

Sections (`--sections`, default all; the modules are in scripts/bench/):
  - world: events (impressions included) and engagements per second of `generate_world` on the
    chosen world (no cache), median of `--repeats` runs;
  - crossings: per crossing option (`conf/model/crossing/*.yaml`): parameter count of the whole
    two-tower model and of its dense part; training examples per second over `--train-batches`
    batches after `--warmup`, through the real TwoTowerModule + DMP + Lightning path; evaluation
    users per second (retrieve + evaluate_ranking, flat index); FLOPs of one training step (towers
    and in-batch logits, forward and backward) and `flops_fraction_of_gemm` = achieved FLOP/s over
    a large fp32 matmul's FLOP/s measured in the same run;
  - index: flat vs HNSW on the corpus with the mlp model's embeddings (users/s, ann_recall@100);
  - pipeline: training steps/s with the real DataModule over steps/s on pre-built batches;
  - embedding: an embedding-heavy training step (`--embedding-tables` tables of `--embedding-rows`
    x 64, bags of 10, batch `--embedding-batch`), ebr's fused torchrec path vs plain
    `nn.EmbeddingBag(sparse=True)` + `torch.optim.Adagrad`;
  - ann: `conf/index/{hnsw_large,ivfpq_large}` against flat on `--ann-corpus` unit vectors of a
    Gaussian mixture (queries per second ratio, ann_recall@100, build time);
  - memory: wall time and peak RSS of a default `ebr-train` run (a child process), and this
    process's own peak RSS;
  - scale (only when named): world generation, one training epoch and the evaluation at three world
    sizes up to `data=synthetic_large` (1M users, 1M pins), each in child processes with its own
    peak RSS, and each figure's growth exponent over the log's size (`scripts/bench/scale.py`;
    `--quick`: the tiny world at 1x, 4x, 16x); then the largest world's model served through
    each `--scale-indexes` preset over every pin that exists at serving time: index build, search
    users/s and its ratio to flat's, ann_recall@100 and recall@100
    (`ebr/diagnostics/bench/serving_scale.py`);
  - serving_scale (only when named): one epoch of the default model on the learnable large world
    (`--serving-data`, default `data=synthetic_xl`; or `--serving-model` reuses a trained model.pt
    of it), then that model served through each `--serving-indexes` preset over every pin that
    exists at serving time, one evaluation-only job each with `--threads` torch and faiss threads:
    search users/s and its ratio to flat's, ann_recall@100 (test users), recall@100, and for
    `index=auto` the setting it chose on validation users;
  - serving_diagnosis (only when named, with `--serving-model`): why the indexes lose recall on that
    model's vectors: their norms, near-identical items, the crowding of the exact top 100's
    boundary, and index=auto's operating points over IVF candidates (nprobe up to 256) on
    `--ann-queries` validation users (`ebr/diagnostics/bench/index_recall.py`);
  - sequence (only when named): training examples/s of the sequence user tower at N = 50 and 200
    against the bag tower, FLOPs per step and the share of the GEMM peak (`scripts/bench/sequence.py`;
    `--sequence-batches` timed batches per arm).

The JSON's top level holds the headline keys (`embedding_step_speedup`, `flops_fraction_of_gemm`,
`pipeline_efficiency`, `hnsw_ann_recall@100`, `hnsw_qps_ratio`, ...) and `settings` the sizes used.

Usage:
    python scripts/benchmark.py --threads 2                      # default world, full sizes
    python scripts/benchmark.py --quick --json /tmp/bench.json   # tiny world, small sizes (< 5 min)
    python scripts/benchmark.py --sections ann --threads 2       # the 1M-vector index comparison only
    python scripts/benchmark.py --sections scale --threads 2     # default world -> 1M users and pins
    python scripts/benchmark.py --sections sequence --data synthetic_tiny   # sequence vs bag tower
    python scripts/benchmark.py --sections serving_scale --threads 2   # synthetic_xl's model, every index
    python scripts/benchmark.py --crossings mlp,dhen --train-batches 100 --json /tmp/bench.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import sys
import tempfile
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import faiss
import hydra
import torch
import torch.distributed as dist
from bench.ann_scale import bench_ann_scale
from bench.cli import ANN_PRESETS, parse_args
from bench.index import SEARCH_K, bench_index
from bench.kernels import bench_embedding_step, gemm_flops_per_second, step_flops
from bench.pipeline import bench_pipeline
from bench.report import format_report
from bench.scale import _child as run_child
from bench.scale import bench_scale
from bench.sequence import bench_sequence, format_sequence
from bench.training import bench_crossing, compose_config
from bench.world import bench_world, default_run_memory, machine_info
from index_filter_benchmark import compose_train

from ebr.diagnostics.bench.index_recall import diagnose
from ebr.diagnostics.bench.serving_scale import (
    bench_serving_section,
    format_serving_section,
)
from ebr.evaluation.task import build_eval_task
from ebr.serving.corpus import training_window_corpus
from ebr.serving.index import IndexConfig
from ebr.serving.index_auto import AutoIndexConfig
from ebr.training.distributed import ensure_process_group

# the matrix size of the GEMM peak measurement
GEMM_N = 2048


def _index_preset(args: argparse.Namespace, root: Path, preset: str) -> IndexConfig:
    return hydra.utils.instantiate(compose_config(args, root, [f"index={preset}"]).index)


def _model_sections(args: argparse.Namespace, root: Path, results: dict[str, Any]) -> None:
    """World, crossings, model-embedding index, FLOPs and pipeline: the sections that need the world."""
    cfg = compose_config(args, root)
    results["world"], data = bench_world(cfg, args.repeats)
    if not {"crossings", "index", "pipeline", "sequence"} & set(args.sections):
        return
    split = hydra.utils.instantiate(cfg.split)(data)
    corpus = training_window_corpus(split)
    task = build_eval_task(split, corpus, window=cfg.eval.window, exclude_train=cfg.eval.exclude_train)
    settings = results["settings"]
    settings.update(batch_size=int(cfg.train.batch_size), eval_users=len(task.user_ids), corpus=len(corpus))
    crossings: dict[str, dict[str, Any]] = {}
    # crossings train the models the index section searches with
    names = args.crossings if {"crossings", "index"} & set(args.sections) else []
    if names or "sequence" in args.sections:
        results["gemm"] = {"n": GEMM_N, "gflops_per_second": gemm_flops_per_second(GEMM_N) / 1e9}
    created = ensure_process_group(root)
    try:
        for name in names:
            (root / name).mkdir()
            crossing_cfg = compose_config(args, root / name, [f"model/crossing={name}"])
            row = bench_crossing(crossing_cfg, data, split, corpus, task, root / name)
            flops = step_flops(crossing_cfg, data, split, corpus)
            achieved = flops * row["train_steps_per_second"]
            row.update(step_gflops=flops / 1e9, achieved_gflops_per_second=achieved / 1e9)
            row["flops_fraction_of_gemm"] = achieved / (results["gemm"]["gflops_per_second"] * 1e9)
            crossings[name] = row
        if "sequence" in args.sections:
            gemm = results["gemm"]["gflops_per_second"] * 1e9
            results["sequence"] = bench_sequence(args, root, data, split, corpus, gemm)
        if "pipeline" in args.sections:
            steps, compose = args.warmup + args.train_batches, partial(compose_config, args)
            results["pipeline"] = bench_pipeline(
                compose, data, split, corpus, root / "pipeline", steps, args.pipeline_rounds
            )
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()
    if "mlp" in crossings:
        mlp = crossings["mlp"]
        for row in crossings.values():
            row["train_vs_mlp"] = row["train_examples_per_second"] / mlp["train_examples_per_second"]
            row["eval_vs_mlp"] = row["eval_users_per_second"] / mlp["eval_users_per_second"]
    if "crossings" in args.sections:
        results["crossings"] = crossings
    if "index" in args.sections:
        source = "mlp" if "mlp" in crossings else args.crossings[0]
        indexes = {"flat": IndexConfig(), "hnsw": _index_preset(args, root, "hnsw")}
        kinds = bench_index(root / source / "model.pt", data, task, indexes, args.repeats)
        results["index"] = {"model": source, "kinds": kinds}


def headline(results: dict[str, Any]) -> dict[str, float]:
    """The figures the goals are stated for, flat at the JSON's top level.

    Args:
        results: the sections measured so far.
    """
    out: dict[str, float] = {}
    if "embedding_step" in results:
        out["embedding_step_speedup"] = results["embedding_step"]["speedup"]
    crossings = results.get("crossings", {})
    if crossings:
        default = crossings.get("mlp", next(iter(crossings.values())))
        out["flops_fraction_of_gemm"] = default["flops_fraction_of_gemm"]
    if "pipeline" in results:
        out["pipeline_efficiency"] = results["pipeline"]["efficiency"]
    kinds = results.get("ann_scale", {}).get("kinds", {})
    # the presets' own settings; sweep rows stay in ann_scale
    for name in (name for name, _ in ANN_PRESETS if name in kinds):
        out[f"{name}_ann_recall@{SEARCH_K}"] = kinds[name][f"ann_recall@{SEARCH_K}"]
        out[f"{name}_qps_ratio"] = kinds[name]["qps_ratio"]
        out[f"{name}_build_seconds"] = kinds[name]["build_seconds"]
    if "world" in results:
        out["world_events_per_second"] = results["world"]["events_per_second"]
    if "scale" in results:
        largest = results["scale"]["sizes"][-1]
        out["large_world_generation_seconds"] = largest["generation_seconds"]
        out["large_world_epoch_peak_rss_mb"] = largest["run_peak_rss_mb"]
        for key, exponent in results["scale"]["growth"].items():
            out[f"growth_exponent/{key}"] = exponent
        for preset, row in results["scale"].get("serving", {}).get("indexes", {}).items():
            if preset != "flat":
                out[f"large_world_{preset}_search_vs_flat"] = row["search_vs_flat"]
                out[f"large_world_{preset}_ann_recall@100"] = row["ann_recall@100"]
    for preset, row in results.get("serving_scale", {}).get("indexes", {}).items():
        if preset != "flat":
            name = preset.split()[0]
            out[f"serving_scale_{name}_search_vs_flat"] = row["search_vs_flat"]
            out[f"serving_scale_{name}_ann_recall@100"] = row["ann_recall@100"]
            if "side_by_side_vs_flat" in row:
                out[f"serving_scale_{name}_side_by_side_vs_flat"] = row["side_by_side_vs_flat"]
    if "memory" in results:
        out["default_run_peak_rss_mb"] = results["memory"]["default_run"]["peak_rss_mb"]
        out["benchmark_peak_rss_mb"] = results["memory"]["benchmark_peak_rss_mb"]
    return out


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement of one benchmark run, as a JSON-ready dict.

    Args:
        args: the parsed command line.
    """
    torch.set_num_threads(args.threads)
    # faiss has its own OpenMP pool; pin it too so search figures use the same thread budget
    faiss.omp_set_num_threads(args.threads)
    settings = {
        name: getattr(args, name)
        for name in ("data", "repeats", "warmup", "train_batches", "threads", "sections", "quick")
    }
    results: dict[str, Any] = {"settings": settings}
    with tempfile.TemporaryDirectory(prefix="ebr-benchmark-") as tmp:
        root = Path(tmp)
        if "memory" in args.sections:
            # first: the child's peak must not include a copy of this process's large arrays
            memory_run = default_run_memory(args.data, root / "default_run", args.threads)
            results["memory"] = {"default_run": memory_run}
        if "scale" in args.sections:
            # before this process holds a world: each size's children start from a small parent
            results["scale"] = bench_scale(
                root / "scale", args.threads, quick=args.quick, serving_presets=args.scale_indexes
            )
        if "serving_scale" in args.sections:
            results["serving_scale"] = bench_serving_section(
                root / "serving_scale",
                args.threads,
                args.serving_data,
                args.serving_indexes,
                run_child,
                model=args.serving_model,
            )
        if "serving_diagnosis" in args.sections:
            if args.serving_model is None:
                raise SystemExit(
                    "--sections serving_diagnosis needs --serving-model (a model.pt of --serving-data)"
                )
            auto = AutoIndexConfig(candidates=args.diagnosis_candidates)
            cfg = compose_train(args.serving_data)
            results["serving_diagnosis"] = diagnose(cfg, args.serving_model, args.ann_queries, auto)
        if {"world", "crossings", "index", "pipeline", "sequence"} & set(args.sections):
            _model_sections(args, root, results)
        if "embedding" in args.sections:
            created = ensure_process_group(root / "embedding")
            try:
                results["embedding_step"] = bench_embedding_step(
                    args.embedding_rows,
                    tables=args.embedding_tables,
                    batch=args.embedding_batch,
                    steps=args.embedding_steps,
                    fused=hydra.utils.instantiate(compose_config(args, root).train.sparse_optimizer),
                )
            finally:
                if created and dist.is_initialized():
                    dist.destroy_process_group()
        if "ann" in args.sections:
            configs = {"flat": IndexConfig()}
            configs.update({name: _index_preset(args, root, preset) for name, preset in ANN_PRESETS})
            for name, settings_list in args.ann_sweep.items():
                base = configs[name].search_params
                for params in settings_list:
                    # IndexConfig checks the names against faiss now, not after a long build
                    dataclasses.replace(configs[name], search_params={**base, **params})
            results["ann_scale"] = bench_ann_scale(
                configs, args.ann_corpus, args.ann_queries, repeats=args.repeats, sweeps=args.ann_sweep
            )
    if "memory" in results:
        # ru_maxrss is in KiB on Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        results["memory"]["benchmark_peak_rss_mb"] = peak
    settings["sizes"] = {
        "embedding_tables": f"{args.embedding_tables} x {args.embedding_rows:,} x 64",
        "embedding_batch": args.embedding_batch,
        "ann_corpus": args.ann_corpus,
        "ann_queries": args.ann_queries,
        "quick_mode_sizes_differ_from_full": bool(args.quick),
    }
    results["machine"] = machine_info(args.threads)
    results["headline"] = headline(results)
    return {**results["headline"], **results}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print its tables and optionally write the JSON.

    Args:
        argv: arguments without the program name (None: sys.argv[1:]).
    """
    args = parse_args(argv)
    results = run_benchmark(args)
    print(format_report(results))
    if "sequence" in results:
        print("\n".join(format_sequence(results["sequence"])))
    if "serving_scale" in results:
        print("\n".join(format_serving_section(results["serving_scale"])))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
