"""The launch config of the suite's two-process CPU tests (torch.distributed elastic, gloo)."""

from __future__ import annotations

import uuid
from pathlib import Path

from torch.distributed.launcher.api import LaunchConfig


def two_local_ranks() -> LaunchConfig:
    """Two local processes; port 0 lets the c10d rendezvous pick a free port, so runs never collide."""
    return LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=2,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=0.5,
        start_method="spawn",
    )


def process_tree(pid: int) -> list[int]:
    """`pid` and every process descending from it (read from /proc: torchrun's workers run in
    sessions of their own, so killing the launcher's process group would miss them)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while being read
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        tree.append(current)
        frontier.extend(children.get(current, []))
    return tree
