"""Shared helpers of the synthetic-world tests: a tiny config and a deep equality of worlds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ebr.data.world import WorldConfig

TINY = WorldConfig(n_users=600, n_pins=300, n_interests=8, n_days=10)
CONF = Path(__file__).resolve().parents[2] / "conf"


def tiny(**changes: object) -> WorldConfig:
    return dataclasses.replace(TINY, **changes)


def flatten(data) -> dict[str, object]:
    """Every array and scalar of a world, by a unique name (events, tables, truth)."""
    out: dict[str, object] = {"meta": (data.name, data.source, data.n_interests, list(data.events.columns))}
    out.update({f"events.{c}": data.events[c].to_numpy() for c in data.events.columns})
    for kind, table in (("users", data.users), ("pins", data.pins)):
        out[f"{kind}.n_rows"] = table.n_rows
        for name, f in table.categorical.items():
            out.update(
                {f"{kind}.{name}.{k}": getattr(f, k) for k in ("offsets", "values", "weights", "cardinality")}
            )
        out.update({f"{kind}.dense.{n}": v for n, v in table.dense.items()})
        out.update({f"{kind}.meta.{n}": v for n, v in table.meta.items()})
    out.update({f"truth.{n}": v for n, v in data.truth.to_arrays().items()})
    return out


def assert_worlds_equal(a, b) -> None:
    fa, fb = flatten(a), flatten(b)
    assert fa.keys() == fb.keys()
    for name, value in fa.items():
        if isinstance(value, np.ndarray):
            assert value.dtype == fb[name].dtype, name
            np.testing.assert_array_equal(value, fb[name], err_msg=name)
        else:
            assert value == fb[name], name
