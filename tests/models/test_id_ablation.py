"""The ID-ablation diagnostic: `ablate_fields` zeroes exactly the named fields (the pre-trained ID
field and a shared-collection ID field alike) and restores them on exit; the trained model's
`id_ablation/*` losses pair with the run's own validation loss, and its `history.json` too."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
from torch import nn

from ebr.models.crossing.mlp import MLPCrossing
from ebr.models.tower import Tower, TowerSpec, ablate_fields
from tests.models.test_id_embedding import N_USERS, _inputs, _tower
from tests.test_end_to_end import REPO, _run


def _shared_id_tower() -> Tower:
    """A tower whose user_id is an ordinary table of the shared collection (model/id_embedding=scratch)."""
    torch.manual_seed(0)
    spec = TowerSpec("user", {"user_id": N_USERS, "country": 5})
    return Tower(spec, functools.partial(MLPCrossing, hidden=[8]), embedding_dim=4, output_dim=3).eval()


def test_ablation_zeroes_the_named_field_only_and_is_undone_on_exit() -> None:
    rows = np.array([0, 1, 3, 7, 1999])
    for tower in (_tower().eval(), _shared_id_tower()):
        inputs = _inputs(rows)
        with torch.no_grad():
            before = tower.fields(inputs.sparse, inputs.dense)
            wrapper = nn.Sequential(tower)  # found through any wrapper, as under sharding
            with ablate_fields(wrapper, {"user_id", "pin_id"}):
                ablated = tower.fields(inputs.sparse, inputs.dense)
                encoded = tower.encode(ablated)
            after = tower.fields(inputs.sparse, inputs.dense)
        position = tower.feature_names.index("user_id")
        expected = before.clone()
        expected[:, position] = 0.0
        torch.testing.assert_close(ablated, expected, rtol=0, atol=0)
        torch.testing.assert_close(after, before, rtol=0, atol=0)
        # the zeroed field changes the output: the ablation reaches the encoder
        assert not torch.allclose(encoded, tower.encode(before))


def test_ablating_a_feature_the_tower_lacks_changes_nothing() -> None:
    tower = _shared_id_tower()
    inputs = _inputs(np.arange(10))
    with torch.no_grad():
        before = tower(inputs.sparse, inputs.dense)
        with ablate_fields(tower, {"pin_id"}):
            assert tower.ablated_fields == frozenset()
            torch.testing.assert_close(tower(inputs.sparse, inputs.dense), before, rtol=0, atol=0)


def test_run_reports_id_ablated_losses_that_pair_with_its_validation_loss(tmp_path) -> None:
    run_dir = tmp_path / "run"
    args = ["data=synthetic_tiny", "trainer.max_epochs=2", "logger=none", "train.id_ablated_loss=true"]
    result = _run([*args, f"hydra.run.dir={run_dir}"], cwd=REPO)
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # the last validation pass and the diagnostic's pass see the same batches with the same weights
    assert abs(metrics["id_ablation/val_loss"] - metrics["final_val_loss"]) < 1e-4
    for window in ("train", "val"):
        reliance = metrics[f"id_ablation/{window}_reliance"]
        kept, ablated = (
            metrics[f"id_ablation/{window}_loss"],
            metrics[f"id_ablation/{window}_loss_without_ids"],
        )
        assert reliance == ablated - kept
        assert reliance > 0  # the scratch ID tables of a trained model carry some of its fit
    # the run's curves: one point per epoch, the last validation point the run's final one
    history = json.loads((run_dir / "history.json").read_text())
    assert history["epoch"] == [1, 2]
    assert len(history["train/loss"]) == 2
    assert history["val/loss"][-1] == pytest.approx(metrics["final_val_loss"])
