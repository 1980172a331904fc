"""Fabricated Hydra multirun directories for the report tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from report_fixtures import project_exclude_keys, write_job

MakeSweep = Callable[..., Path]


@pytest.fixture
def make_sweep(tmp_path: Path) -> MakeSweep:
    """Factory: make_sweep(values, report=..., experiment=..., failed=..., unfinished=...) -> sweep dir.

    `values` maps (model/crossing value, seed) -> metrics dict; jobs are numbered in that order, then the
    `failed` cells (written with error.txt), then the `unfinished` ones (no result file). A cell in none
    of them gets no directory at all. Each job gets ``.hydra/hydra.yaml`` with the exclude keys of
    conf/train.yaml (`hydra_yaml=False`: none, as in an old sweep), `extra_overrides` after its own,
    and, when finished and `info` is given, a ``run.json`` with that info (a callable gets the
    (arm, seed) cell and returns the info).
    """
    counter = {"n": 0}

    def make(
        values: dict[tuple[str, int], dict[str, float]],
        report: dict[str, Any] | None = None,
        experiment: str = "crossing",
        failed: tuple[tuple[str, int], ...] = (),
        unfinished: tuple[tuple[str, int], ...] = (),
        extra_config: dict[str, Any] | None = None,
        name: str | None = None,
        hydra_yaml: bool = True,
        extra_overrides: tuple[str, ...] = (),
        data_choice: str | None = "synthetic_small",
        info: dict[str, Any] | Callable[[tuple[str, int]], dict[str, Any]] | None = None,
    ) -> Path:
        counter["n"] += 1
        sweep = tmp_path / (name or f"sweep{counter['n']}")
        sweep.mkdir()
        (sweep / "multirun.yaml").write_text("hydra: {}\n")
        cells = [*values, *failed, *unfinished]
        for number, (arm, seed) in enumerate(cells):
            config = {"seed": seed, "experiment_name": experiment, "report": report, **(extra_config or {})}
            write_job(
                sweep,
                str(number),
                [f"experiment={experiment}", f"model/crossing={arm}", f"seed={seed}", *extra_overrides],
                metrics=values.get((arm, seed)),
                error="Traceback (most recent call last):\nValueError: diverged\n"
                if (arm, seed) in failed
                else None,
                config=config,
                exclude_keys=project_exclude_keys() if hydra_yaml else None,
                data_choice=data_choice,
                info=info((arm, seed)) if callable(info) else info,
            )
        return sweep

    return make
