"""How many processes a job runs in: the one reader of the launcher's `WORLD_SIZE`.

torchrun, or ebr.runs.cluster for a multi-task cluster job, sets `WORLD_SIZE` before the job starts;
a job started any other way is one process. The process's own rank is `ebr.runs.process_rank`.
"""

from __future__ import annotations

import os

WORLD_SIZE_ENV = "WORLD_SIZE"


def launched() -> bool:
    """Whether a launcher (torchrun, a multi-task cluster job) set this job's ranks."""
    return WORLD_SIZE_ENV in os.environ


def world_size() -> int:
    """The job's process count: `WORLD_SIZE` when a launcher set it (an empty value counts as 1), else 1."""
    return int(os.environ.get(WORLD_SIZE_ENV, "1") or 1)
