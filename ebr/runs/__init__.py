"""Run directories, and the one job wrapper every entry point shares.

A run directory holds:

- ``.hydra/`` (``config.yaml``, ``overrides.yaml``, ``hydra.yaml``), written by Hydra at job start;
- ``run.json``: the resolved config the results came from, its hash, the code that computed them
  (`code`: commit, uncommitted diff hash, versions), the job's arm and what the job read
  (`files.read_record`);
- ``metrics.json``: flat ``{metric: number}``, written last: it marks the job finished;
- ``error.txt``: the traceback, instead of ``metrics.json``, when the job failed;
- ``.outcome.json``: what the latest invocation did (finished, skipped, failed, refused), read by
  the sweep tally.

Modules: `files` (names and atomic writers), `arms` (what a sweep compares), `identity` (the config
that decides a job's results), `code` (the code that computed them), `dashboard` (the config
columns and tags a job's run is sliced by on a dashboard), `objective` (the metric a search
optimizes), `ranks` (the job's process count), `wrapper` (skip, refuse, run, record, rank-0
guard), `signals` (SIGTERM and SIGINT end a job as failed), `tally` (what a sweep's jobs did),
`console` (the known-harmless warnings a job silences, `verbose`, and its timed stage lines).
This package imports nothing else of ebr and no torch: the report reads run directories through it.
"""

from ebr.runs.arms import Arm, arm_from_overrides, parse_override, read_arm
from ebr.runs.dashboard import RunLabels, column_name, info_columns, run_labels, run_tags
from ebr.runs.files import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    ERROR_FILE,
    FAILED,
    FINISHED,
    HISTORY_FILE,
    HYDRA_DIR,
    HYDRA_FILE,
    LAST_CHECKPOINT,
    METRICS_FILE,
    MODEL_FILE,
    OUTCOME_FILE,
    OVERRIDES_FILE,
    RECORD_FILE,
    REFUSED,
    RESULT_NEUTRAL_KEYS,
    SHARDING_FILE,
    SINGLE_ARM,
    SKIPPED,
    WALL_CLOCK_METRICS,
    dig,
    is_finished,
    metrics_damage,
    publish_directory,
    read_metrics,
    read_record,
    read_yaml,
    record_failure,
    remove_directory,
    write_atomic,
    write_bytes_atomic,
    write_json_atomic,
    write_metrics,
    write_text_atomic,
)
from ebr.runs.identity import config_differences, config_hash, flatten_config, result_config
from ebr.runs.objective import job_objective
from ebr.runs.ranks import launched, world_size
from ebr.runs.signals import JobInterrupted
from ebr.runs.tally import Tally, tally_sweep
from ebr.runs.wrapper import (
    HEADLINE_METRICS,
    JobFunction,
    JobLoggers,
    JobResult,
    JobSpec,
    NoLoggers,
    StaleRunError,
    is_rank_zero,
    process_rank,
    run_in_directory,
    unwrapped,
)

__all__ = [
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "ERROR_FILE",
    "FAILED",
    "FINISHED",
    "HEADLINE_METRICS",
    "HISTORY_FILE",
    "HYDRA_DIR",
    "HYDRA_FILE",
    "LAST_CHECKPOINT",
    "METRICS_FILE",
    "MODEL_FILE",
    "OUTCOME_FILE",
    "OVERRIDES_FILE",
    "RECORD_FILE",
    "REFUSED",
    "RESULT_NEUTRAL_KEYS",
    "SHARDING_FILE",
    "SINGLE_ARM",
    "SKIPPED",
    "WALL_CLOCK_METRICS",
    "Arm",
    "JobFunction",
    "JobInterrupted",
    "JobLoggers",
    "JobResult",
    "JobSpec",
    "NoLoggers",
    "RunLabels",
    "StaleRunError",
    "Tally",
    "arm_from_overrides",
    "column_name",
    "config_differences",
    "config_hash",
    "dig",
    "flatten_config",
    "info_columns",
    "is_finished",
    "is_rank_zero",
    "job_objective",
    "launched",
    "metrics_damage",
    "parse_override",
    "process_rank",
    "publish_directory",
    "read_arm",
    "read_metrics",
    "read_record",
    "read_yaml",
    "record_failure",
    "remove_directory",
    "result_config",
    "run_in_directory",
    "run_labels",
    "run_tags",
    "tally_sweep",
    "unwrapped",
    "world_size",
    "write_atomic",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_metrics",
    "write_text_atomic",
]
