"""Fixtures of the data tests."""

import pytest
from world_helpers import TINY

from ebr.data.world import generate_world


@pytest.fixture(scope="module")
def world():
    """The tiny synthetic world, generated once per test module."""
    return generate_world(TINY)
