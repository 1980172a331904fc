"""Fabricated sweeps over several worlds (``data.config.seed``) for the report tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from report_fixtures import CROSSING_REPORT, project_exclude_keys, write_job

CLAIM = {
    "arm": {"model/crossing": "masknet"},
    "metric": "sim/repins",
    "direction": "+",
    "paper": "repins +1%",
}
WORLD_REPORT: dict[str, Any] = {**CROSSING_REPORT, "claims": [CLAIM]}


def world_sweep(
    root: Path,
    name: str,
    values: dict[tuple[str, int, int], dict[str, float]],
    report: dict[str, Any] | None = None,
) -> Path:
    """A sweep folder with one job per (arm, world, seed) of `values` (its metrics).

    Args:
        root: where the sweep folder goes.
        name: the sweep folder's name.
        values: (model/crossing value, world, seed) -> metrics.
        report: the experiment's ``report`` node (default `WORLD_REPORT`).
    """
    sweep = root / name
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    for number, ((arm, world, seed), metrics) in enumerate(values.items()):
        overrides = [
            "experiment=crossing",
            f"model/crossing={arm}",
            f"data.config.seed={world}",
            f"seed={seed}",
        ]
        config = {
            "seed": seed,
            "experiment_name": name,
            "data": {"config": {"seed": world}},
            "report": report if report is not None else WORLD_REPORT,
        }
        write_job(sweep, str(number), overrides, metrics, config=config, exclude_keys=project_exclude_keys())
    return sweep


def factor_values(
    factors: dict[int, list[float]], base: float = 100.0, metric: str = "sim/repins"
) -> dict[tuple[str, int, int], dict[str, float]]:
    """mlp at `base` + world + seed, masknet at that times factors[world][seed].

    Args:
        factors: world -> per-seed ratio masknet / mlp (so the relative delta is ratio - 1).
        base: the baseline's level.
        metric: the metric both report.
    """
    out = {}
    for world, per_seed in factors.items():
        for seed, factor in enumerate(per_seed):
            level = base + world + seed
            out[("mlp", world, seed)] = {metric: level, "recall@100": 0.5}
            out[("masknet", world, seed)] = {metric: level * factor, "recall@100": 0.5}
    return out
