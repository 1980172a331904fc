"""Fixtures of the training tests: a small world and the one-process group torchrec's sharding needs."""

import pytest
import torch

from ebr.data.world import WorldConfig, generate_world
from ebr.training.distributed import ensure_process_group


@pytest.fixture(scope="module")
def world():
    return generate_world(WorldConfig(n_users=300, n_pins=200, n_interests=6, n_days=10))


@pytest.fixture(scope="module")
def process_group(tmp_path_factory):
    created = ensure_process_group(tmp_path_factory.mktemp("pg"))
    yield
    if created and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
