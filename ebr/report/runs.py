"""Reading a Hydra multirun directory: jobs, their arms and seeds, failed and missing runs.

A job directory is any direct subdirectory of the sweep holding ``.hydra/overrides.yaml``. It is
*finished* when ``metrics.json`` exists, *failed* when only ``error.txt`` exists and *missing*
otherwise. Override keys that take more than one value across jobs define the arm (all but the seed
key); the expected grid is every observed arm times every observed seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

SEED_KEY = "seed"
UNSET = "<unset>"
METRICS_FILE = "metrics.json"
ERROR_FILE = "error.txt"
OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"
CONFIG_FILE = Path(".hydra") / "config.yaml"


class SweepError(ValueError):
    """Bad input: not a sweep directory, no runs, or a malformed run file (the message names it)."""


@dataclass(frozen=True)
class ReportMeta:
    """The ``report`` node of an experiment config plus the wandb naming of the runs.

    Args:
        technique: human name of the technique, e.g. "Feature crossing (MaskNet, DHEN)".
        baseline: override key -> value naming the baseline arm, or None.
        metrics: headline metrics in display order.
        paper: arm value (or label) -> the paper's reported delta, free text.
        control: True for the knob-off control sweep.
        page: repository-relative path of the technique's page.
        experiment_name: the runs' ``experiment_name``.
        wandb_group: ``logger.group`` if set, else the experiment name.
        wandb_project: ``logger.project`` if set.
    """

    technique: str | None = None
    baseline: dict[str, Any] | None = None
    metrics: tuple[str, ...] = ()
    paper: dict[str, str] = field(default_factory=dict)
    control: bool = False
    page: str | None = None
    experiment_name: str | None = None
    wandb_group: str | None = None
    wandb_project: str | None = None


@dataclass(frozen=True)
class Job:
    """One job directory of the sweep.

    Args:
        name: directory name (Hydra's job number).
        path: the directory.
        overrides: override key -> value, in the order Hydra wrote them.
        seed: the seed (from the ``seed`` override, else the config), as text; None if unknown.
        metrics: metric name -> value when finished, else None.
        error: text of ``error.txt`` when present.
        config: the job's config (unresolved OmegaConf) or None when ``config.yaml`` is absent.
    """

    name: str
    path: Path
    overrides: dict[str, str]
    seed: str | None
    metrics: dict[str, float] | None
    error: str | None
    config: DictConfig | None

    @property
    def status(self) -> str:
        """ "finished", "failed" or "missing"."""
        if self.metrics is not None:
            return "finished"
        return "failed" if self.error is not None else "missing"


@dataclass(frozen=True)
class RunProblem:
    """A failed or missing run, named so a reader can find it.

    Args:
        name: the job directory name, or "ARM seed=S" for a hole in the expected grid.
        arm: arm label.
        seed: seed (text) or None.
        reason: one line saying what is wrong.
    """

    name: str
    arm: str
    seed: str | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        """JSON form used in ``report.json``."""
        return {"name": self.name, "arm": self.arm, "seed": self.seed, "reason": self.reason}


@dataclass
class Sweep:
    """A sweep grouped into arms and seeds.

    Args:
        path: the sweep directory.
        jobs: every job directory, in job-number order.
        arm_keys: override keys (other than the seed) whose value varies across jobs.
        arms: arm labels in order of first appearance.
        arm_values: arm label -> {arm key: value}.
        seeds: observed seeds, numeric order when they are integers.
        cells: (arm, seed) -> job.
        failed: jobs with ``error.txt`` and no metrics.
        missing: unfinished jobs and holes in the arms x seeds grid.
        meta: experiment metadata read from the jobs' configs.
        notes: things the report must say (e.g. inconsistent metadata).
    """

    path: Path
    jobs: list[Job]
    arm_keys: list[str]
    arms: list[str]
    arm_values: dict[str, dict[str, str]]
    seeds: list[str]
    cells: dict[tuple[str, str | None], Job]
    failed: list[RunProblem]
    missing: list[RunProblem]
    meta: ReportMeta
    notes: list[str]

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


def parse_override(text: str, source: str) -> tuple[str, str]:
    """Split one Hydra override string into (key, value).

    Args:
        text: e.g. ``model/crossing=masknet`` or ``+data.config.noise=0.1``.
        source: file name used in the error message.
    """
    if not isinstance(text, str):
        raise SweepError(f"{source}: override {text!r} is not a string")
    if text.startswith("~"):
        # a deletion override has no value; keep it distinguishable from any assignment
        return text, "<deleted>"
    key, sep, value = text.partition("=")
    if not sep or not key.lstrip("+"):
        raise SweepError(f"{source}: override {text!r} is not of the form key=value")
    return key.lstrip("+"), value


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


def _select(config: DictConfig | None, key: str) -> Any:
    """A config value as plain Python, resolving interpolations where possible (None if absent)."""
    if config is None:
        return None
    value = OmegaConf.select(config, key, default=None, throw_on_resolution_failure=False)
    if isinstance(value, DictConfig | ListConfig):
        try:
            return OmegaConf.to_container(value, resolve=True)
        except Exception:
            # Hydra-only resolvers (${hydra:...}) cannot be resolved outside Hydra
            return OmegaConf.to_container(value, resolve=False)
    return value


def read_job(path: Path, sweep_dir: Path) -> Job:
    """Read one job directory.

    Args:
        path: the job directory (holding ``.hydra/overrides.yaml``).
        sweep_dir: the sweep directory, for naming files in messages.
    """
    label = path.relative_to(sweep_dir).as_posix()
    source = f"{label}/{OVERRIDES_FILE.as_posix()}"
    try:
        raw = yaml.safe_load((path / OVERRIDES_FILE).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SweepError(f"{source}: not valid YAML ({exc})") from exc
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise SweepError(f"{source}: expected a YAML list of override strings, got {type(raw).__name__}")
    overrides = dict(parse_override(item, source) for item in raw)

    config = None
    if (path / CONFIG_FILE).is_file():
        try:
            config = OmegaConf.load(path / CONFIG_FILE)
        except Exception as exc:
            raise SweepError(f"{label}/{CONFIG_FILE.as_posix()}: cannot be read ({exc})") from exc
        if not isinstance(config, DictConfig):
            raise SweepError(f"{label}/{CONFIG_FILE.as_posix()}: expected a mapping")

    seed = overrides.get(SEED_KEY)
    if seed is None:
        config_seed = _select(config, SEED_KEY)
        seed = None if config_seed is None else str(config_seed)

    metrics = None
    if (path / METRICS_FILE).is_file():
        metrics = _read_metrics(path / METRICS_FILE, f"{label}/{METRICS_FILE}")
    error = None
    if (path / ERROR_FILE).is_file():
        error = (path / ERROR_FILE).read_text(encoding="utf-8", errors="replace")
    return Job(label, path, overrides, seed, metrics, error, config)


def _sort_key(text: str | None) -> tuple[int, float, str]:
    if text is None:
        return (2, 0.0, "")
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def error_summary(error: str) -> str:
    """The last non-empty line of a traceback (the exception and its message)."""
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    return lines[-1] if lines else "error.txt is empty"


def _parse_meta(job: Job) -> ReportMeta:
    source = f"{job.name}/{CONFIG_FILE.as_posix()}"
    node = _select(job.config, "report")
    experiment = _select(job.config, "experiment_name")
    group = _select(job.config, "logger.group") or experiment
    project = _select(job.config, "logger.project")
    base = ReportMeta(
        experiment_name=None if experiment is None else str(experiment),
        wandb_group=None if group is None else str(group),
        wandb_project=None if project is None else str(project),
    )
    if node is None:
        return base
    if not isinstance(node, dict):
        raise SweepError(f"{source}: 'report' must be a mapping or null, got {node!r}")
    baseline = node.get("baseline")
    if baseline is not None and not isinstance(baseline, dict):
        raise SweepError(f"{source}: report.baseline must map override key -> value, got {baseline!r}")
    metrics = node.get("metrics") or []
    if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
        raise SweepError(f"{source}: report.metrics must be a list of metric names, got {metrics!r}")
    paper = node.get("paper") or {}
    if not isinstance(paper, dict) or any(isinstance(v, dict | list) for v in paper.values()):
        raise SweepError(f"{source}: report.paper must map arm value -> text, got {paper!r}")
    control = node.get("control", False)
    if not isinstance(control, bool):
        raise SweepError(f"{source}: report.control must be true or false, got {control!r}")
    page = node.get("page")
    technique = node.get("technique")
    return ReportMeta(
        technique=None if technique is None else str(technique),
        baseline=baseline or None,
        metrics=tuple(metrics),
        paper={str(k): str(v) for k, v in paper.items()},
        control=control,
        page=None if page is None else str(page),
        experiment_name=base.experiment_name,
        wandb_group=base.wandb_group,
        wandb_project=base.wandb_project,
    )


def _sweep_meta(jobs: list[Job], notes: list[str]) -> ReportMeta:
    with_config = [job for job in jobs if job.config is not None]
    if not with_config:
        notes.append("No job has .hydra/config.yaml: no experiment metadata (baseline, paper deltas).")
        return ReportMeta()
    first = _parse_meta(with_config[0])
    differing = [job.name for job in with_config[1:] if _parse_meta(job) != first]
    if differing:
        notes.append(
            f"The report metadata of jobs {', '.join(differing)} differs from job {with_config[0].name}'s; "
            f"job {with_config[0].name}'s is used."
        )
    return first


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
        key=lambda child: _sort_key(child.name),
    )
    if not job_dirs:
        raise SweepError(f"{path}: not a sweep directory (no subdirectory holds {OVERRIDES_FILE.as_posix()})")
    jobs = [read_job(child, path) for child in job_dirs]

    keys: dict[str, None] = {}
    for job in jobs:
        keys.update(dict.fromkeys(job.overrides))
    arm_keys = [
        key for key in keys if key != SEED_KEY and len({job.overrides.get(key, UNSET) for job in jobs}) > 1
    ]

    arms: list[str] = []
    arm_values: dict[str, dict[str, str]] = {}
    cells: dict[tuple[str, str | None], Job] = {}
    job_arm: dict[str, str] = {}
    for job in jobs:
        values = {key: job.overrides.get(key, UNSET) for key in arm_keys}
        arm = ",".join(f"{key}={value}" for key, value in values.items()) or "all runs"
        if arm not in arm_values:
            arms.append(arm)
            arm_values[arm] = values
        if (arm, job.seed) in cells:
            other = cells[(arm, job.seed)].name
            raise SweepError(
                f"{path}: jobs {other} and {job.name} have the same arm {arm!r} and seed {job.seed}"
            )
        cells[(arm, job.seed)] = job
        job_arm[job.name] = arm
    seeds = sorted({job.seed for job in jobs if job.seed is not None}, key=_sort_key)

    failed: list[RunProblem] = []
    missing: list[RunProblem] = []
    notes: list[str] = []
    for job in jobs:
        arm = job_arm[job.name]
        if job.status == "failed":
            failed.append(RunProblem(job.name, arm, job.seed, error_summary(job.error or "")))
        elif job.status == "missing":
            missing.append(RunProblem(job.name, arm, job.seed, f"neither {METRICS_FILE} nor {ERROR_FILE}"))
        elif job.error is not None:
            notes.append(f"Job {job.name} has both {METRICS_FILE} and {ERROR_FILE}; its metrics are used.")
    if any(job.seed is None for job in jobs) and seeds:
        unknown = [job.name for job in jobs if job.seed is None]
        notes.append(f"Jobs {', '.join(unknown)} state no seed; they are left out of seed pairing.")
    for arm in arms:
        for seed in seeds:
            if (arm, seed) not in cells:
                missing.append(RunProblem(f"{arm} seed={seed}", arm, seed, "no job directory"))

    return Sweep(
        path=path,
        jobs=jobs,
        arm_keys=arm_keys,
        arms=arms,
        arm_values=arm_values,
        seeds=seeds,
        cells=cells,
        failed=failed,
        missing=missing,
        meta=_sweep_meta(jobs, notes),
        notes=notes,
    )
