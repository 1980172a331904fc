"""Suite-wide settings: offline wandb, a private world cache, one thread per test process, the schemas;
the `hydra_conf` fixture (Hydra initialised on the repository's conf/, for `compose`)."""

import os
from pathlib import Path

import pytest
import torch
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

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


@pytest.fixture
def hydra_conf():
    """Hydra initialised on the repository's conf/ for the test (cleared before and after)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        yield
    GlobalHydra.instance().clear()
