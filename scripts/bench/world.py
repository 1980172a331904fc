"""World generation speed, the machine description, and the peak memory of a default `ebr-train` run."""

from __future__ import annotations

import gc
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import faiss
import hydra
import numpy as np
import pytorch_lightning as pl
import torch
import torchrec
from omegaconf import DictConfig

from ebr.data.schema import InteractionData
from ebr.data.world import generate_world

REPO = Path(__file__).resolve().parent.parent.parent


def machine_info(threads: int) -> dict[str, Any]:
    """CPU count, thread settings and library versions of this run.

    Args:
        threads: the faiss thread count set by the benchmark.
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


def default_run_memory(data: str, run_dir: Path, threads: int, epochs: int | None = None) -> dict[str, Any]:
    """Wall time and peak resident memory of one default `ebr-train` run, in a child process.

    The peak is the child's `ru_maxrss` (resource.getrusage(RUSAGE_CHILDREN)): the largest of the
    children waited for so far, so this must run before any other child process of the benchmark.

    Args:
        data: the `data=` option.
        run_dir: Hydra's run directory of the child (the world cache stays where the config says).
        threads: `num_threads=` of the run.
        epochs: `trainer.max_epochs=` (None: the config's).
    """
    command = [
        sys.executable,
        "-m",
        "ebr.train",
        f"data={data}",
        "logger=none",
        f"num_threads={threads}",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={run_dir}",
    ]
    if epochs is not None:
        command.append(f"trainer.max_epochs={epochs}")
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    # ru_maxrss is in KiB on Linux
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    # the temporary run directory is left out of the shown command: it names nothing reusable
    shown = " ".join(part for part in command[1:] if not part.startswith("hydra.run.dir="))
    return {"command": shown, "seconds": seconds, "peak_rss_mb": peak}
