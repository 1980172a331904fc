"""How the pipeline grows with the world: generation, training and evaluation at three world sizes.

Each size runs in child processes of its own, so that every peak is that child's (`os.wait4`):
1. generate the world into a fresh cache (`ebr.data.loaders.synthetic.load_world`, as a job would);
2. `ebr-train` one epoch of the default model on it, reading the cached world.
From the two come generation seconds and events per second, the peak RSS of each, training
examples per second and evaluation users per second (`metrics.json`). The growth exponent of a
figure between two sizes is the slope of log(figure) over log(events): 1 is linear in the log's
size, 0 is constant; a throughput's exponent near 0 means the cost grows linearly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ebr.diagnostics.bench.growth import growth_exponents
from ebr.diagnostics.bench.serving_scale import bench_serving_scale

REPO = Path(__file__).resolve().parent.parent.parent

# (label, the `ebr-train` data overrides): the default world, then the large world's family at
# 1/5 of its users and pins, then data=synthetic_large itself (1M users, 1M pins)
SIZES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("default (20k users, 10k pins)", ("data=synthetic",)),
    (
        "200k users, 200k pins",
        ("data=synthetic_large", "data.config.n_users=200000", "data.config.n_pins=200000"),
    ),
    ("synthetic_large (1M users, 1M pins)", ("data=synthetic_large",)),
)
QUICK_SIZES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("tiny", ("data=synthetic_tiny",)),
    ("tiny x4", ("data=synthetic_tiny", "data.config.n_users=6000", "data.config.n_pins=3200")),
    ("tiny x16", ("data=synthetic_tiny", "data.config.n_users=24000", "data.config.n_pins=12800")),
)

_GENERATE = """
import json, sys, time
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from ebr.config import register_schemas
register_schemas()
with initialize_config_dir(config_dir=sys.argv[1], version_base=None):
    cfg = compose("train", overrides=sys.argv[2:])
started = time.perf_counter()
data = instantiate(cfg.data)
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "events": len(data.events), "engagements": len(data.engagements()),
                  "users": int(data.users.n_rows), "pins": int(data.pins.n_rows)}))
"""


def _child(command: Sequence[str], env: dict[str, str], logs: Path) -> tuple[str, float, float]:
    """Run a child to completion: (its stdout, wall seconds, its own peak RSS in MB).

    The output goes to files and the child is reaped with `os.wait4`, whose resource usage is that
    child's alone (RUSAGE_CHILDREN would be the largest of every child so far).
    """
    logs.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logs / "stdout.txt", logs / "stderr.txt"
    started = time.perf_counter()
    with out_path.open("w") as out, err_path.open("w") as err:
        child = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({code}):\n{err_path.read_text()[-3000:]}")
    # ru_maxrss is in KiB on Linux
    return out_path.read_text(), seconds, usage.ru_maxrss / 1024


def bench_scale(
    root: Path, threads: int, quick: bool = False, serving_presets: Sequence[str] = ()
) -> dict[str, Any]:
    """Generation, one training epoch and the evaluation at three world sizes, and their growth;
    then the largest world's model served through each of `serving_presets`
    (ebr.diagnostics.bench.serving_scale).

    Args:
        root: scratch directory (the worlds' caches and the runs).
        threads: `num_threads=` of the training runs.
        quick: the tiny world at 1x, 4x and 16x instead of the default and large worlds.
        serving_presets: conf/index options, flat first; empty: no serving comparison.
    """
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    rows = []
    for number, (label, overrides) in enumerate(QUICK_SIZES if quick else SIZES):
        env = dict(
            os.environ, PYTHONPATH=path, EBR_CACHE_DIR=str(root / f"cache{number}"), WANDB_MODE="offline"
        )
        generate = [sys.executable, "-c", _GENERATE, str(REPO / "conf"), *overrides]
        out, _, generation_peak = _child(generate, env, root / f"generate{number}")
        world = json.loads(out.strip().splitlines()[-1])
        run_dir = root / f"run{number}"
        train = [
            sys.executable,
            "-m",
            "ebr.train",
            *overrides,
            "trainer.max_epochs=1",
            "logger=none",
            f"num_threads={threads}",
            "trainer.enable_progress_bar=false",
            f"hydra.run.dir={run_dir}",
        ]
        _, run_seconds, run_peak = _child(train, env, root / f"train{number}")
        metrics = json.loads((run_dir / "metrics.json").read_text())
        rows.append(
            {
                "label": label,
                "overrides": list(overrides),
                **world,
                "generation_seconds": world["seconds"],
                "generation_events_per_second": world["events"] / world["seconds"],
                "generation_peak_rss_mb": generation_peak,
                "run_seconds": run_seconds,
                "run_peak_rss_mb": run_peak,
                "train_examples": metrics["train/examples"],
                "train_examples_per_second": metrics["train/examples_per_second"],
                "eval_users": metrics["eval/users"],
                "eval_corpus": metrics["eval/corpus_size"],
                "eval_users_per_second": metrics["eval/users_per_second"],
                "eval_seconds": metrics["eval/seconds"],
                "recall@100": metrics["recall@100"],
            }
        )
    result: dict[str, Any] = {"sizes": rows, "growth": growth_exponents(rows)}
    if serving_presets:
        result["serving"] = bench_serving_scale(
            run_dir / "model.pt", overrides, env, root, threads, serving_presets, _child
        )
    return result
