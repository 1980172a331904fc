"""What a sweep's jobs say about themselves: the experiment's ``report`` metadata and the data set read.

The metadata comes from ``.hydra/config.yaml``; the data set from ``run.json`` (info ``data_name`` and
``data_source``, what the job actually read), else from the config (the ``data`` choice in
``.hydra/hydra.yaml`` and ``data.path``) for jobs written before ``run.json`` recorded it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from ebr.report.claim_schema import ClaimError, parse_claims
from ebr.report.document import DataRead
from ebr.report.pooled import Claim
from ebr.runs import CONFIG_FILE, HYDRA_FILE, RECORD_FILE, dig, read_record, read_yaml

RECORDED, CONFIGURED = RECORD_FILE, "config"


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
        claims: ``report.claims``: the paper's claims the sweep tests (`ebr.report.claim_schema`).
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
    claims: tuple[Claim, ...] = ()


@dataclass(frozen=True)
class JobData:
    """The data set one job read (or, without ``run.json``, would read by its config).

    Args:
        name: the data set's name.
        source: where it is read from, None when unknown.
        recorded_in: "run.json" or "config".
    """

    name: str
    source: str | None
    recorded_in: str


def select(config: DictConfig | None, key: str) -> Any:
    """A config value as plain Python, resolving interpolations where possible (None if absent).

    Args:
        config: a job's ``.hydra/config.yaml``, or None.
        key: dotted key.
    """
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


def parse_meta(config: DictConfig | None, label: str) -> ReportMeta:
    """The report metadata of one job's config.

    Args:
        config: the job's config, or None.
        label: the job's name, for messages.

    Raises:
        SweepError: the ``report`` node is malformed (the message names the file and key).
    """
    source = f"{label}/{CONFIG_FILE}"
    node = select(config, "report")
    experiment = select(config, "experiment_name")
    group = select(config, "logger.group") or experiment
    project = select(config, "logger.project")
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
    try:
        claims = parse_claims(node.get("claims"), baseline, metrics)
    except ClaimError as exc:
        raise SweepError(f"{source} (conf/experiment/{experiment}.yaml): {exc}") from exc
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
        claims=claims,
    )


def sweep_meta(configs: list[tuple[str, DictConfig]], notes: list[str]) -> ReportMeta:
    """The sweep's metadata: the first job's, with a note naming jobs whose metadata differs.

    Args:
        configs: (job name, config) of the jobs that have ``.hydra/config.yaml``, in job order.
        notes: receives what the report must say.
    """
    if not configs:
        notes.append("No job has .hydra/config.yaml: no experiment metadata (baseline, paper deltas).")
        return ReportMeta()
    first_name, first_config = configs[0]
    first = parse_meta(first_config, first_name)
    differing = [name for name, config in configs[1:] if parse_meta(config, name) != first]
    if differing:
        notes.append(
            f"The report metadata of jobs {', '.join(differing)} differs from job {first_name}'s; "
            f"job {first_name}'s is used."
        )
    return first


def read_job_data(path: Path, label: str, config: DictConfig | None) -> JobData | None:
    """The data set of one job: from ``run.json`` info, else from its config; None when neither says.

    Args:
        path: the job directory.
        label: the job's name, for messages.
        config: the job's config, or None.

    Raises:
        SweepError: ``run.json`` or ``.hydra/hydra.yaml`` is malformed (the message names it).
    """
    try:
        record = read_record(path)
    except ValueError as exc:
        raise SweepError(str(exc)) from exc
    info = None if record is None else record.get("info")
    if info is not None:
        source = f"{label}/{RECORD_FILE}"
        if not isinstance(info, dict):
            raise SweepError(f"{source}: 'info' must be a mapping, got {info!r}")
        name, where = info.get("data_name"), info.get("data_source")
        if name is not None:
            if not isinstance(name, str):
                raise SweepError(f"{source}: info.data_name must be a string, got {name!r}")
            if where is not None and not isinstance(where, str):
                raise SweepError(f"{source}: info.data_source must be a string or null, got {where!r}")
            return JobData(name, where, RECORDED)
    choice = _data_choice(path, label)
    # config.yaml is saved unresolved: an ${oc.env:...} in data.path resolves in the report's
    # environment, which is why run.json, written by the job itself, is preferred
    data_path = select(config, "data.path")
    data_path = None if data_path is None else str(data_path)
    if choice is None and data_path is None:
        return None
    return JobData(choice or Path(data_path or "").name, data_path, CONFIGURED)


def _data_choice(path: Path, label: str) -> str | None:
    """The ``data`` config group option the job ran with (``hydra.runtime.choices.data``)."""
    try:
        node = read_yaml(path / HYDRA_FILE, default={})
    except ValueError as exc:
        raise SweepError(f"{label}/{HYDRA_FILE}: not valid YAML ({exc})") from exc
    choice = dig(node, ("hydra", "runtime", "choices", "data"))
    return None if choice is None else str(choice)


def data_read(jobs: list[tuple[str, JobData | None]], notes: list[str]) -> list[DataRead]:
    """The data sets the sweep read, grouped by (name, source) in job order.

    What the jobs recorded in ``run.json`` is used when any job recorded it (jobs that failed
    before recording read nothing to report); the configs otherwise.

    Args:
        jobs: (job name, its data or None), in job order.
        notes: receives a note when the jobs read different data, or when only configs say.
    """
    recorded = [(name, data) for name, data in jobs if data is not None and data.recorded_in == RECORDED]
    chosen = recorded or [(name, data) for name, data in jobs if data is not None]
    groups: dict[tuple[str, str | None], list[str]] = {}
    for name, data in chosen:
        assert data is not None
        groups.setdefault((data.name, data.source), []).append(name)
    kind = RECORDED if recorded else CONFIGURED
    out = [DataRead(name, source, kind, tuple(names)) for (name, source), names in groups.items()]
    if chosen and not recorded:
        notes.append(
            f"No job has {RECORD_FILE} with the data set it read: the data set shown is the one the "
            "jobs' configs name."
        )
    if len(out) > 1:
        parts = [
            d.name + (f" ({d.source})" if d.source else "") + f" in job(s) {', '.join(d.jobs)}" for d in out
        ]
        notes.append(f"The jobs read different data sets: {'; '.join(parts)}.")
    return out
