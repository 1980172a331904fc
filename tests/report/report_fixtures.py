"""Helpers shared by the report tests: fabricated job directories as ebr-train under Hydra writes them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]

CROSSING_REPORT: dict[str, Any] = {
    "technique": "Feature crossing (MaskNet, DHEN)",
    "baseline": {"model/crossing": "mlp"},
    "metrics": ["recall@100", "sim/repins"],
    "paper": {"masknet": "engaged sessions +0.15% to +0.35% (online)", "dhen": "engaged sessions +0.1%"},
    "control": False,
    "page": "experiments/crossing.md",
}


def project_exclude_keys() -> list[str]:
    """``hydra.job.config.override_dirname.exclude_keys`` of the project's conf/train.yaml."""
    config = yaml.safe_load((REPO / "conf" / "train.yaml").read_text())
    return list(config["hydra"]["job"]["config"]["override_dirname"]["exclude_keys"])


def hydra_override_dirname(overrides: list[str], exclude_keys: list[str]) -> str:
    """``hydra.job.override_dirname`` as Hydra 1.3 builds it: the input lines whose key (less the
    ``+``/``++``/``~`` prefix) is not excluded, sorted as text and joined by commas."""
    kept = [line for line in overrides if line.split("=", 1)[0].lstrip("+~") not in exclude_keys]
    return ",".join(sorted(kept))


def hydra_yaml(
    overrides: list[str], exclude_keys: list[str], data_choice: str | None = None
) -> dict[str, Any]:
    """The parts of ``.hydra/hydra.yaml`` the report reads, laid out as Hydra writes them."""
    choices = {"hydra/launcher": "basic"} | ({} if data_choice is None else {"data": data_choice})
    return {
        "hydra": {
            "mode": "MULTIRUN",
            "overrides": {"hydra": ["hydra.mode=MULTIRUN"], "task": list(overrides)},
            "job": {
                "name": "train",
                "chdir": False,
                "override_dirname": hydra_override_dirname(overrides, exclude_keys),
                "config": {
                    "override_dirname": {"kv_sep": "=", "item_sep": ",", "exclude_keys": list(exclude_keys)}
                },
            },
            "runtime": {"version": "1.3.2", "choices": choices},
        }
    }


def write_job(
    sweep: Path,
    name: str,
    overrides: list[str],
    metrics: dict[str, float] | None = None,
    error: str | None = None,
    config: dict[str, Any] | None = None,
    exclude_keys: list[str] | None = None,
    data_choice: str | None = None,
    info: dict[str, Any] | None = None,
) -> Path:
    """Write one job directory the way ebr-train under Hydra would.

    Args:
        sweep: the sweep directory.
        name: the job directory's name.
        overrides: the task overrides (``.hydra/overrides.yaml``).
        metrics: ``metrics.json``, None for an unfinished job.
        error: ``error.txt``, None for none.
        config: ``.hydra/config.yaml``, None for none.
        exclude_keys: write ``.hydra/hydra.yaml`` with these exclusions; None writes no hydra.yaml
            (a sweep from before the file was read).
        data_choice: ``hydra.runtime.choices.data`` in hydra.yaml.
        info: the ``info`` of ``run.json`` (written only with `metrics`, as the job wrapper does);
            None writes no run.json.
    """
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if config is not None:
        (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    if exclude_keys is not None:
        node = hydra_yaml(overrides, exclude_keys, data_choice)
        (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(node, sort_keys=False))
    if metrics is not None and info is not None:
        record = {
            "config_hash": "0" * 16,
            "arm": "?",
            "config": config or {},
            "hydra_files": {},
            "info": info,
        }
        (job / "run.json").write_text(json.dumps(record))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))
    if error is not None:
        (job / "error.txt").write_text(error)
    return job
