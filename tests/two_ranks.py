"""The launch config of the suite's two-process CPU tests (torch.distributed elastic, gloo)."""

from __future__ import annotations

import uuid

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
