"""The one reader of a job's process count (ebr.runs.ranks)."""

from __future__ import annotations

import pytest

from ebr.runs import launched, world_size


@pytest.mark.parametrize(("value", "expected"), [(None, 1), ("", 1), ("1", 1), ("4", 4)])
def test_the_process_count_comes_from_the_launcher(monkeypatch, value, expected) -> None:
    if value is None:
        monkeypatch.delenv("WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("WORLD_SIZE", value)
    assert world_size() == expected
    assert launched() is (value is not None)
