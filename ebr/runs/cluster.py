"""A multi-task cluster job (submitit, on SLURM or locally) as one process group.

A Hydra sweep through `hydra/launcher=submitit_slurm` with `tasks_per_node=N` starts N processes
per array task, all running the same job in the same run directory. They learn their place from
submitit's job environment, not from torchrun's variables, so this module exports them as torchrun
would (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE) before anything reads them, and names a
rendezvous file for the group. The file is in the job's run directory and carries the cluster job's
id and restart count: two jobs, or a requeued job and its first attempt, can never meet in it, as
they could on a port derived from the job id. submitit already requires a folder every node sees.
"""

from __future__ import annotations

import os
from pathlib import Path

from ebr.runs.ranks import launched

# the environment variable ebr.training.distributed.ensure_process_group reads the rendezvous from
RENDEZVOUS_ENV = "EBR_PROCESS_GROUP_FILE"


def adopt_cluster_task(run_dir: Path) -> bool:
    """Export a multi-task submitit job's ranks as torchrun's variables, and its rendezvous file.

    Does nothing outside submitit, under torchrun (WORLD_SIZE already set) or for one-task jobs.

    Args:
        run_dir: the job's run directory (shared by its tasks).

    Returns:
        True when this process is one task of a multi-task job.
    """
    if not os.environ.get("SUBMITIT_EXECUTOR") or launched():
        return False
    from submitit import JobEnvironment  # only cluster jobs need submitit

    job = JobEnvironment()
    if job.num_tasks <= 1:
        return False
    os.environ.update(
        RANK=str(job.global_rank),
        LOCAL_RANK=str(job.local_rank),
        WORLD_SIZE=str(job.num_tasks),
        LOCAL_WORLD_SIZE=str(job.num_tasks // max(job.num_nodes, 1)),
    )
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if "," in visible:
        # every task sees the node's GPUs: each takes its own, so `trainer=gpu` (one device) is it
        devices = visible.split(",")
        os.environ["CUDA_VISIBLE_DEVICES"] = devices[job.local_rank % len(devices)]
    attempt = os.environ.get("SLURM_RESTART_COUNT", "0")
    rendezvous = Path(run_dir).resolve() / f".process_group-{job.job_id}-{attempt}"
    os.environ[RENDEZVOUS_ENV] = str(rendezvous)
    return True
