"""Start-up of ebr jobs (experiments/benchmark.md, "Start-up"): import times, CPU seconds of baseline
jobs and a two-tower job's time to its first training batch, for the checkout at --root.

    python scripts/startup_probe.py --root . --data-path ../shared/datasets/ml-latest-small

CPU seconds are user + system time of the child process (resource.getrusage), which other work on
the machine inflates far less than wall time. Run it on two checkouts (e.g. a `git archive` of the
older commit) to compare them.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

# patched into a two-tower job: prints the process's CPU and wall seconds at the first training
# step, then ends the process
FIRST_BATCH = """
import os, sys, time
started = time.time()
import ebr.training.module as module
def first(self, batch, batch_idx):
    t = os.times()
    print(f"FIRST_BATCH cpu={t.user + t.system:.2f} wall={time.time() - started:.2f}", flush=True)
    os._exit(0)
module.TwoTowerModule.training_step = first
from ebr.train import main
sys.argv = ["ebr-train", *sys.argv[1:]]
main()
"""


def _env(root: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(root), WANDB_MODE="offline", OMP_NUM_THREADS="1")


def import_times(root: Path, module: str, top: int) -> tuple[float, list[tuple[str, float]]]:
    """(seconds to import `module`, its `top` slowest third-party packages with their seconds)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        cwd=root, env=_env(root), capture_output=True, text=True, check=True,
    )  # fmt: skip
    total, packages = 0.0, {}
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if match is None:
            continue
        seconds, name = int(match[1]) / 1e6, match[3]
        if name == module:
            total = seconds
        first = name.split(".")[0]
        if first != "ebr" and "." not in name:
            packages[first] = max(packages.get(first, 0.0), seconds)
    return total, sorted(packages.items(), key=lambda kv: -kv[1])[:top]


def job_cpu(root: Path, args: list[str], out: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one `ebr-train` job run to the end."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "ebr.train", *args, "logger=none", f"hydra.run.dir={out}", "force=true"],
        cwd=root, env=_env(root), capture_output=True, check=True,
    )  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return cpu, time.perf_counter() - started


def first_batch(root: Path, args: list[str], out: Path) -> str:
    """The FIRST_BATCH line of a two-tower job (CPU and wall seconds to its first training step)."""
    done = subprocess.run(
        [sys.executable, "-c", FIRST_BATCH, *args, "logger=none", f"hydra.run.dir={out}", "force=true"],
        cwd=root, env=_env(root), capture_output=True, text=True,
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith("FIRST_BATCH")]
    return lines[0] if lines else f"no first batch (exit {done.returncode}): {done.stderr[-500:]}"


def main() -> None:
    """Print the measurements as markdown-ready lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="the checkout to measure")
    parser.add_argument("--data-path", required=True, help="ml-latest-small's folder")
    parser.add_argument("--out", type=Path, default=Path("outputs/startup_probe"), help="run directories")
    parser.add_argument("--jobs", default="popularity,ease", help="baseline models, comma-separated")
    args = parser.parse_args()
    root, out = args.root.resolve(), args.out.resolve()
    for module in ("ebr.train", "ebr.pipeline"):
        total, slowest = import_times(root, module, 6)
        shown = ", ".join(f"{name} {seconds:.2f}" for name, seconds in slowest)
        print(f"import {module}: {total:.2f} s; slowest third-party: {shown}")
    data = ["data=movielens", f"data.path={Path(args.data_path).resolve()}"]
    for model in args.jobs.split(","):
        cpu, wall = job_cpu(root, [f"model={model}", *data], out / model)
        print(f"ebr-train model={model} data=movielens logger=none: {cpu:.2f} CPU s, {wall:.1f} wall s")
    print("two-tower (data=movielens):", first_batch(root, data, out / "two_tower"))


if __name__ == "__main__":
    main()
