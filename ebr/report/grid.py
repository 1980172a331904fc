"""The jobs a sweep was asked to run, from its own record (``multirun.yaml``), not from its folders.

Hydra's basic sweeper (the joblib launcher uses it too) writes the sweep's config into
``SWEEP_DIR/multirun.yaml`` before the first job starts: the sweeper's ``params`` (set by
experiment files, ``hydra.sweeper.params``) and the command line's task overrides
(``hydra.overrides.task``, e.g. ``seed=0,1``). Expanding them as the sweeper does
(`BasicSweeper.split_arguments`, the cartesian product in Hydra's order) gives every job's override
list, so a job whose folder was never written, or was deleted, is still expected. A search
sweeper (Optuna, ``hparams_search``) has no fixed grid: its trials are what it recorded, and its
requested trial count is kept for the report's notes. A folder that holds several grids (two
``ebr-train -m`` calls into one sweep folder, the second into its own job subfolders) keeps the
earlier calls' records as ``multirun.NAME.yaml`` (`scripts/reproduce.sh` renames each before the
next call): the expected jobs are the union of all records.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ebr.report.meta import SweepError
from ebr.runs import HYDRA_FILE

MULTIRUN_FILE = "multirun.yaml"
# the records of further grids run into the same sweep folder
EXTRA_RECORDS = "multirun.*.yaml"
BASIC_SWEEPER = "BasicSweeper"


@dataclass(frozen=True)
class ExpectedGrid:
    """What a sweep's ``multirun.yaml`` says about its jobs.

    Args:
        jobs: every expected job's task overrides, in Hydra's job-number order; None when the
            sweeper has no fixed grid (a search).
        exclude_keys: ``hydra.job.config.override_dirname.exclude_keys`` (what names no arm).
        default_seed: the sweep config's ``seed``, for jobs that do not override it.
        sweeper: the sweeper's ``_target_``.
        n_trials: a search's requested trial count, None otherwise.
    """

    jobs: list[list[str]] | None
    exclude_keys: list[str]
    default_seed: str | None
    sweeper: str
    n_trials: int | None = None


def _node(config: DictConfig, key: str) -> Any:
    return OmegaConf.select(config, key, default=None, throw_on_resolution_failure=False)


def _plain(value: Any) -> Any:
    if isinstance(value, DictConfig) or OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=False)
    return value


def read_expected_grid(sweep_dir: Path) -> ExpectedGrid | None:
    """The sweep's expected jobs, or None when it recorded none (no ``multirun.yaml``, or one
    without ``hydra.overrides.task``, e.g. a folder of links to other sweeps' jobs). A search
    (its sweeper is not the basic one) gets a grid without jobs, from ``multirun.yaml`` or else
    from a job's ``.hydra/hydra.yaml``.

    Args:
        sweep_dir: the sweep directory.

    Raises:
        SweepError: naming the file, when ``multirun.yaml`` cannot be read or its parameters
            cannot be expanded.
    """
    path = Path(sweep_dir) / MULTIRUN_FILE
    if not path.is_file():
        return _search_without_record(Path(sweep_dir))
    grid = _read_record(path)
    if grid is None or grid.jobs is None:
        return grid
    # further grids run into the same folder (their own job subfolders), each record kept under
    # another name before the next call overwrote multirun.yaml (scripts/reproduce.sh)
    jobs = list(grid.jobs)
    for extra in sorted(Path(sweep_dir).glob(EXTRA_RECORDS)):
        other = _read_record(extra)
        if other is not None and other.jobs is not None:
            jobs += [job for job in other.jobs if job not in jobs]
    return replace(grid, jobs=jobs)


def _read_record(path: Path) -> ExpectedGrid | None:
    """One ``multirun.yaml``-style record's grid (see `read_expected_grid`)."""
    config = _load(path)
    task = _plain(_node(config, "hydra.overrides.task"))
    if task is None:
        return None
    if not isinstance(task, list) or not all(isinstance(item, str) for item in task):
        raise SweepError(f"{path}: hydra.overrides.task is not a list of override strings")
    exclude = _plain(_node(config, "hydra.job.config.override_dirname.exclude_keys")) or []
    seed = _node(config, "seed")
    sweeper = str(_node(config, "hydra.sweeper._target_") or BASIC_SWEEPER)
    common = {
        "exclude_keys": [str(key) for key in exclude],
        "default_seed": None if seed is None else str(seed),
        "sweeper": sweeper,
    }
    if not sweeper.endswith(BASIC_SWEEPER):
        trials = _node(config, "hydra.sweeper.n_trials")
        return ExpectedGrid(None, n_trials=int(trials) if isinstance(trials, int) else None, **common)
    params = _plain(_node(config, "hydra.sweeper.params")) or {}
    if not isinstance(params, dict):
        raise SweepError(f"{path}: hydra.sweeper.params is not a mapping")
    # the basic sweeper's own order: its params first, then the command line's overrides
    arguments = [f"{key}={value}" for key, value in params.items()] + list(task)
    return ExpectedGrid(expand(arguments, path), **common)


def _load(path: Path) -> DictConfig:
    try:
        config = OmegaConf.load(path)
    except Exception as exc:
        raise SweepError(f"{path}: cannot be read ({exc})") from exc
    if not isinstance(config, DictConfig):
        raise SweepError(f"{path}: expected a mapping")
    return config


def _search_without_record(sweep_dir: Path) -> ExpectedGrid | None:
    """A search's grid (none) from a job's ``.hydra/hydra.yaml``: the Optuna sweeper writes no
    ``multirun.yaml``; None when the jobs ran under the basic sweeper (their grid is unknown)."""
    for child in sorted(sweep_dir.iterdir()):
        if (child / HYDRA_FILE).is_file():
            config = _load(child / HYDRA_FILE)
            sweeper = str(_node(config, "hydra.sweeper._target_") or BASIC_SWEEPER)
            if sweeper.endswith(BASIC_SWEEPER):
                return None
            trials = _node(config, "hydra.sweeper.n_trials")
            seed = _node(config, "seed")
            return ExpectedGrid(
                None,
                exclude_keys=[],
                default_seed=None if seed is None else str(seed),
                sweeper=sweeper,
                n_trials=int(trials) if isinstance(trials, int) else None,
            )
    return None


def expand(arguments: list[str], source: Path) -> list[list[str]]:
    """Every job's override list for a basic sweep's arguments, as Hydra's basic sweeper builds them.

    Args:
        arguments: ``key=value`` overrides, sweeps written ``key=a,b``.
        source: the file they came from (named in errors).

    Raises:
        SweepError: an argument Hydra cannot parse or the basic sweeper cannot expand.
    """
    # Hydra's internals, imported here: the same parser and expansion the sweep itself used
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        overrides = OverridesParser.create().parse_overrides(arguments)
        batches = BasicSweeper.split_arguments(overrides, None)
    except Exception as exc:
        raise SweepError(f"{source}: the sweep's parameters cannot be expanded ({exc})") from exc
    return [list(job) for batch in batches for job in batch]
