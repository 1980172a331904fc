"""Helpers shared by the report tests: fabricated job directories as ebr-train under Hydra writes them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

CROSSING_REPORT: dict[str, Any] = {
    "technique": "Feature crossing (MaskNet, DHEN)",
    "baseline": {"model/crossing": "mlp"},
    "metrics": ["recall@100", "sim/repins"],
    "paper": {"masknet": "engaged sessions +0.15% to +0.35% (online)", "dhen": "engaged sessions +0.1%"},
    "control": False,
    "page": "experiments/crossing.md",
}


def write_job(
    sweep: Path,
    name: str,
    overrides: list[str],
    metrics: dict[str, float] | None = None,
    error: str | None = None,
    config: dict[str, Any] | None = None,
) -> Path:
    """Write one job directory the way ebr-train under Hydra would."""
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if config is not None:
        (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))
    if error is not None:
        (job / "error.txt").write_text(error)
    return job
