"""Suite-wide settings: offline wandb, a private world cache, one thread per test process, the schemas."""

import os
from pathlib import Path

import pytest
import torch

from ebr.config import register_schemas

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment(tmp_path_factory):
    os.environ["WANDB_MODE"] = "offline"
    os.environ["WANDB_SILENT"] = "true"
    os.environ.setdefault("EBR_CACHE_DIR", str(tmp_path_factory.mktemp("ebr-cache")))
    torch.set_num_threads(1)
    # the config schemas every composed config starts from (what each ebr entry point registers)
    register_schemas()
    return
