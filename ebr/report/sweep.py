"""Reading a Hydra multirun directory: jobs, their arms and seeds, failed and missing runs.

A job directory is any direct subdirectory of the sweep holding ``.hydra/overrides.yaml``. It is
*finished* when ``metrics.json`` exists, *failed* when only ``error.txt`` exists and *missing*
otherwise. A job's arm is `ebr.runs.read_arm`: its ``hydra.job.override_dirname``, the overrides less
``hydra.job.config.override_dirname.exclude_keys`` (the wandb job type is the same string); the seed
pairs the runs of different arms. The expected grid is the sweep's own record (``multirun.yaml``,
ebr.report.grid): every expected job without a folder is missing. A sweep without that record (a
folder of links to other sweeps' jobs) expects every observed arm times every observed seed; a
search (no fixed grid) expects the trials it recorded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from ebr.report.document import DataRead, Problem
from ebr.report.gaps import error_summary, grid_missing, job_problems, observed_grid_note
from ebr.report.grid import read_expected_grid
from ebr.report.meta import JobData, ReportMeta, SweepError, data_read, read_job_data, select, sweep_meta
from ebr.report.worlds import SEED_KEY, WORLD_KEY, job_world, replicate_sort_key, sort_key, split_worlds
from ebr.runs import CONFIG_FILE, ERROR_FILE, METRICS_FILE, OVERRIDES_FILE, Arm, read_arm
from ebr.runs import parse_override as parse_override_pair

UNSET = "<unset>"

__all__ = [
    "SEED_KEY",
    "WORLD_KEY",
    "Job",
    "ReportMeta",
    "Sweep",
    "SweepError",
    "error_summary",
    "load_sweep",
    "parse_override",
]


@dataclass(frozen=True)
class Job:
    """One job directory of the sweep.

    Args:
        name: directory name (Hydra's job number).
        path: the directory.
        overrides: override key -> value, in the order Hydra wrote them.
        arm: the job's arm (label and values).
        seed: the seed (from the ``seed`` override, else the config), as text; None if unknown.
        metrics: metric name -> value when finished, else None.
        error: text of ``error.txt`` when present.
        config: the job's config (unresolved OmegaConf) or None when ``config.yaml`` is absent.
        data: the data set the job read, None when nothing says.
        override_list: the override strings as Hydra wrote them (matched against the sweep's grid).
        world: the world (``data.config.seed``) as text; None if unknown.
    """

    name: str
    path: Path
    overrides: dict[str, str]
    arm: Arm
    seed: str | None
    metrics: dict[str, float] | None
    error: str | None
    config: DictConfig | None
    data: JobData | None
    override_list: tuple[str, ...] = ()
    world: str | None = None

    @property
    def status(self) -> str:
        """ "finished", "failed" or "missing"."""
        if self.metrics is not None:
            return "finished"
        return "failed" if self.error is not None else "missing"


@dataclass
class Sweep:
    """A sweep grouped into arms and seeds.

    Args:
        path: the sweep directory.
        jobs: every job directory, in job-number order.
        arm_keys: override keys whose value differs between arms (they make the short labels).
        arms: arm labels in order of first appearance.
        arm_values: arm label -> {override key: value}.
        arm_short: arm label -> short label (the `arm_keys` pairs; the label when no key differs).
        seeds: observed seeds, numeric order when they are integers.
        cells: (arm, seed) -> job.
        failed: jobs with ``error.txt`` and no metrics.
        missing: unfinished jobs and expected jobs without a folder.
        meta: experiment metadata read from the jobs' configs.
        data: the data sets the jobs read.
        notes: things the report must say (e.g. inconsistent metadata).
        expected_runs: how many jobs the sweep was asked to run.
        worlds: the worlds of a sweep over several (else empty: its `seeds` are plain seeds).
        world_of: replicate key (``WORLD/SEED``, the `seeds` of a multi-world sweep) -> world.
    """

    path: Path
    jobs: list[Job]
    arm_keys: list[str]
    arms: list[str]
    arm_values: dict[str, dict[str, str]]
    arm_short: dict[str, str]
    seeds: list[str]
    cells: dict[tuple[str, str | None], Job]
    failed: list[Problem]
    missing: list[Problem]
    meta: ReportMeta
    data: list[DataRead]
    notes: list[str]
    expected_runs: int
    worlds: list[str] = field(default_factory=list)
    world_of: dict[str, str] = field(default_factory=dict)

    def finished_values(self, arm: str, metric: str) -> dict[str | None, float]:
        """Seed -> value of `metric` for the finished runs of `arm` that report it."""
        out: dict[str | None, float] = {}
        for seed in self.seeds_or_none():
            job = self.cells.get((arm, seed))
            if job is not None and job.metrics is not None and metric in job.metrics:
                out[seed] = job.metrics[metric]
        return out

    def seeds_or_none(self) -> list[str | None]:
        """The seeds, or [None] when no job states its seed."""
        return list(self.seeds) if self.seeds else [None]

    def metric_names(self) -> list[str]:
        """Every metric reported by at least one finished run, in first-seen order."""
        names: dict[str, None] = {}
        for job in self.jobs:
            names.update(dict.fromkeys(job.metrics or {}))
        return list(names)

    @property
    def n_finished(self) -> int:
        return sum(job.status == "finished" for job in self.jobs)


def parse_override(text: object, source: str) -> tuple[str, str]:
    """Split one Hydra override string into (key, value) (`ebr.runs.parse_override`).

    Args:
        text: e.g. ``model/crossing=masknet`` or ``+data.config.noise=0.1``.
        source: file (or option) named in the error message.

    Raises:
        SweepError: not a string of the form key=value.
    """
    if not isinstance(text, str):
        raise SweepError(f"{source}: override {text!r} is not a string")
    try:
        return parse_override_pair(text)
    except ValueError as exc:
        raise SweepError(f"{source}: {exc}") from exc


def _read_metrics(path: Path, label: str) -> dict[str, float]:
    def reject_constant(name: str) -> float:
        raise SweepError(f"{label}: non-finite value {name} (metrics.json must hold finite numbers)")

    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=reject_constant)
    except json.JSONDecodeError as exc:
        raise SweepError(f"{label}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise SweepError(f"{label}: expected a JSON object metric -> number, got {type(data).__name__}")
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SweepError(f"{label}: metric {key!r} is {value!r}, not a number")
    return {key: float(value) for key, value in data.items()}


def _job_arm(path: Path) -> Arm:
    """The job's arm (`ebr.runs.read_arm`: its override_dirname, the seed always left out)."""
    try:
        return read_arm(path)
    except ValueError as exc:
        raise SweepError(str(exc)) from exc


def read_job(path: Path, sweep_dir: Path) -> Job:
    """Read one job directory.

    Args:
        path: the job directory (holding ``.hydra/overrides.yaml``).
        sweep_dir: the sweep directory, for naming files in messages.

    Raises:
        SweepError: a malformed run file (the message names it).
    """
    label = path.relative_to(sweep_dir).as_posix()
    source = f"{label}/{OVERRIDES_FILE}"
    try:
        raw = yaml.safe_load((path / OVERRIDES_FILE).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SweepError(f"{source}: not valid YAML ({exc})") from exc
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise SweepError(f"{source}: expected a YAML list of override strings, got {type(raw).__name__}")
    overrides = dict(parse_override(item, source) for item in raw)
    arm = _job_arm(path)

    config = None
    if (path / CONFIG_FILE).is_file():
        try:
            config = OmegaConf.load(path / CONFIG_FILE)
        except Exception as exc:
            raise SweepError(f"{label}/{CONFIG_FILE}: cannot be read ({exc})") from exc
        if not isinstance(config, DictConfig):
            raise SweepError(f"{label}/{CONFIG_FILE}: expected a mapping")

    seed = overrides.get(SEED_KEY)
    if seed is None:
        config_seed = select(config, SEED_KEY)
        seed = None if config_seed is None else str(config_seed)

    metrics = None
    if (path / METRICS_FILE).is_file():
        metrics = _read_metrics(path / METRICS_FILE, f"{label}/{METRICS_FILE}")
    error = None
    if (path / ERROR_FILE).is_file():
        error = (path / ERROR_FILE).read_text(encoding="utf-8", errors="replace")
    data = read_job_data(path, label, config)
    world = job_world(overrides, select(config, WORLD_KEY))
    return Job(label, path, overrides, arm, seed, metrics, error, config, data, tuple(raw), world)


def short_labels(arm_values: dict[str, dict[str, str]]) -> tuple[list[str], dict[str, str]]:
    """(keys whose value differs between arms, arm label -> short label).

    The short label keeps those keys only (a key an arm lacks reads "<unset>"), so it tells the
    arms apart as the full label does; with one arm, or none differing, it is the full label.

    Args:
        arm_values: arm label -> {override key: value}, in arm order.
    """
    keys = sorted({key for values in arm_values.values() for key in values})
    varying = [key for key in keys if len({values.get(key, UNSET) for values in arm_values.values()}) > 1]
    short = {
        label: ",".join(f"{key}={values.get(key, UNSET)}" for key in varying) or label
        for label, values in arm_values.items()
    }
    return varying, short


def load_sweep(sweep_dir: str | Path) -> Sweep:
    """Read every job of a multirun directory and group the jobs into arms and seeds.

    Args:
        sweep_dir: the Hydra sweep directory (``hydra.sweep.dir``).

    Raises:
        SweepError: not a directory, no job directory in it, a malformed run file, or two jobs with
            the same arm and seed.
    """
    path = Path(sweep_dir)
    if not path.is_dir():
        raise SweepError(f"{path}: not a directory")
    job_dirs = sorted(
        (child for child in path.iterdir() if (child / OVERRIDES_FILE).is_file()),
        key=lambda child: sort_key(child.name),
    )
    if not job_dirs:
        raise SweepError(f"{path}: not a sweep directory (no subdirectory holds {OVERRIDES_FILE})")
    jobs, worlds, world_of = split_worlds([read_job(child, path) for child in job_dirs])
    notes: list[str] = []

    arms: list[str] = []
    arm_values: dict[str, dict[str, str]] = {}
    cells: dict[tuple[str, str | None], Job] = {}
    for job in jobs:
        arm = job.arm.label
        if arm not in arm_values:
            arms.append(arm)
            arm_values[arm] = dict(job.arm.values)
        if (arm, job.seed) in cells:
            other = cells[(arm, job.seed)].name
            raise SweepError(
                f"{path}: jobs {other} and {job.name} have the same arm {arm!r} and seed {job.seed}"
            )
        cells[(arm, job.seed)] = job
    seeds = sorted({job.seed for job in jobs if job.seed is not None}, key=replicate_sort_key)
    arm_keys, arm_short = short_labels(arm_values)

    failed, missing = job_problems(jobs, notes)
    if any(job.seed is None for job in jobs) and seeds:
        unknown = [job.name for job in jobs if job.seed is None]
        notes.append(f"Jobs {', '.join(unknown)} state no seed; they are left out of seed pairing.")
    grid = read_expected_grid(path)
    if grid is not None and grid.jobs is not None:
        missing += grid_missing(grid, jobs, notes, bool(worlds))
        expected_runs = len(grid.jobs)
    else:
        for arm in arms:
            for seed in seeds:
                if (arm, seed) not in cells:
                    missing.append(Problem(f"{arm} seed={seed}", arm, seed, "no job directory"))
        expected_runs = len(arms) * max(len(seeds), 1)
        notes.append(observed_grid_note(grid, len(jobs)))

    meta = sweep_meta([(job.name, job.config) for job in jobs if job.config is not None], notes)
    return Sweep(
        path=path,
        jobs=jobs,
        arm_keys=arm_keys,
        arms=arms,
        arm_values=arm_values,
        arm_short=arm_short,
        seeds=seeds,
        cells=cells,
        failed=failed,
        missing=missing,
        meta=meta,
        data=data_read([(job.name, job.data) for job in jobs], notes),
        notes=notes,
        expected_runs=expected_runs,
        worlds=worlds,
        world_of=world_of,
    )
