"""Training throughput of the sequence user tower (`model/user_encoder=sequence`) against the bag
tower, at sequence lengths N = 50 and 200, and its share of the GEMM peak.

Each arm trains through the real `ebr-train` path (`bench.training.fit_timed`: Hydra config, the
retriever's fit, DMP, Lightning, the BatchTimer) for a few timed batches after one warm-up batch;
its FLOPs per step are counted as the crossings section counts them (`bench.kernels.step_flops`:
matrix products of both towers, the Transformer's included, and the logits, forward and backward).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from bench.kernels import step_flops
from bench.training import compose_config, fit_timed
from ebr.data.schema import InteractionData, Split

# arm name -> its overrides (the bag tower is the default model)
ARMS = {
    "bag": [],
    "sequence_n50": ["model/user_encoder=sequence", "model.user_encoder.length=50"],
    "sequence_n200": ["model/user_encoder=sequence", "model.user_encoder.length=200"],
}


def bench_sequence(
    args: argparse.Namespace,
    root: Path,
    data: InteractionData,
    split: Split,
    corpus: np.ndarray,
    gemm_flops: float,
) -> dict[str, Any]:
    """{arm: examples/s, steps/s, FLOPs per step, achieved FLOP/s and its share of the GEMM's}.

    Args:
        args: the parsed command line (`sequence_batches` timed batches per arm, data, threads).
        root: a scratch directory (one run directory per arm).
        data: the world.
        split: its temporal split.
        corpus: the serving corpus (the pool of random negatives).
        gemm_flops: the machine's fp32 GEMM FLOP/s measured in the same run.
    """
    timed = argparse.Namespace(**{**vars(args), "warmup": 1, "train_batches": args.sequence_batches})
    rows: dict[str, dict[str, Any]] = {}
    for name, overrides in ARMS.items():
        run_dir = root / f"sequence_{name}"
        run_dir.mkdir()
        cfg = compose_config(timed, run_dir, overrides)
        retriever, timing = fit_timed(cfg, data, split, corpus, run_dir)
        # the FLOP count reads the data as the fit did: with the serving sequences in the user table
        flops = step_flops(cfg, retriever.user_encoder.prepare(data, split), split, corpus)
        achieved = flops * timing["steps_per_second"]
        rows[name] = {
            "train_batches": timing["batches"],
            "train_examples_per_second": timing["examples_per_second"],
            "train_steps_per_second": timing["steps_per_second"],
            "step_gflops": flops / 1e9,
            "achieved_gflops_per_second": achieved / 1e9,
            "flops_fraction_of_gemm": achieved / gemm_flops,
        }
    bag = rows["bag"]["train_examples_per_second"]
    for row in rows.values():
        row["train_vs_bag"] = row["train_examples_per_second"] / bag
    return rows


def format_sequence(rows: dict[str, dict[str, Any]]) -> list[str]:
    """The section's report lines.

    Args:
        rows: what `bench_sequence` returned.
    """
    lines = ["", "user tower: bag vs sequence (training, real ebr-train path):"]
    for name, row in rows.items():
        lines.append(
            f"  {name:14s} {row['train_examples_per_second']:10.1f} examples/s"
            f" ({row['train_vs_bag']:.3f}x bag),"
            f" {row['step_gflops']:.2f} GFLOP/step, {row['achieved_gflops_per_second']:.2f} GFLOP/s ="
            f" {row['flops_fraction_of_gemm']:.3f} of the GEMM peak ({row['train_batches']} timed batches)"
        )
    return lines
