"""Per-table optimisation: a frozen pre-trained ID table keeps its rows bit for bit and holds no
optimizer state through training steps, while the other tables (and a fine-tuned ID table) move."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from tiny_model import tiny_model_config

from ebr.data.batching import FeatureGatherer, make_batch
from ebr.models.artifact import build_model
from ebr.models.features import resolve_features, tower_specs
from ebr.models.loss import SampledSoftmaxLoss
from ebr.training.distributed import FusedTableOptimizer
from ebr.training.module import TwoTowerModule

ID_TABLES = {
    "user": "user_tower.id_ebc.embedding_bags.user__user_id.weight",
    "pin": "pin_tower.id_ebc.embedding_bags.pin__pin_id.weight",
}
OTHER_TABLE = "user_tower.ebc.embedding_bags.user__country.weight"


def _module(world, freeze: bool, sharding: str = "table_wise"):
    features = resolve_features(
        dict.fromkeys(["user_sparse", "user_dense", "pin_sparse", "pin_dense"]), world
    )
    user_spec, pin_spec = tower_specs(world, features)
    # the "snapshot" knows the first half of each side's ids (row i = id i)
    user_spec = dataclasses.replace(user_spec, id_feature="user_id", id_rows=150)
    pin_spec = dataclasses.replace(pin_spec, id_feature="pin_id", id_rows=100)
    config = {**tiny_model_config(32, 8, 16), "id_freeze": freeze, "id_dropout": 0.5}

    def factory():
        model = build_model(config, user_spec, pin_spec)
        for tower, rows in ((model.user_tower, 150), (model.pin_tower, 100)):
            mapping = torch.full_like(tower.id_rows, -1)
            mapping[:rows] = torch.arange(rows)
            tower.id_rows.copy_(mapping)
        return model

    torch.manual_seed(0)
    module = TwoTowerModule(
        model_factory=factory,
        loss=SampledSoftmaxLoss(),
        sparse_optimizer=FusedTableOptimizer(lr=0.5),
        sharding=sharding,
    )
    module.configure_model()
    gatherers = (
        FeatureGatherer(world.users, features["user_sparse"], features["user_dense"]),
        FeatureGatherer(world.pins, features["pin_sparse"], features["pin_dense"]),
    )
    return module, gatherers


def _train(module, gatherers, world, steps: int = 4) -> torch.optim.Optimizer:
    optimizer = module.configure_optimizers()
    engagements = world.engagements()
    module.train()
    for step in range(steps):
        part = slice(step * 64, (step + 1) * 64)
        batch = make_batch(
            *gatherers, engagements["user"].to_numpy()[part], engagements["pin"].to_numpy()[part]
        )
        loss = module.training_step(batch, step)
        optimizer.zero_grad()
        loss.backward()  # fused table updates happen here
        optimizer.step()
    return optimizer


def _fused_state_keys(module) -> set[str]:
    return set(module.model.fused_optimizer.state_dict()["state"])


@pytest.mark.parametrize("sharding", ["table_wise", "data_parallel"])
def test_frozen_id_tables_stay_bit_identical_and_hold_no_optimizer_state(world, process_group, sharding):
    module, gatherers = _module(world, freeze=True, sharding=sharding)
    before = module.export_state_dict()
    optimizer = _train(module, gatherers, world)
    after = module.export_state_dict()
    for key in ID_TABLES.values():
        assert torch.equal(before[key], after[key]), f"{key} moved"
    assert not torch.equal(before[OTHER_TABLE], after[OTHER_TABLE]), "the other tables must train"
    for side in ("user", "pin"):
        unknown = f"{side}_tower.id_unknown"
        assert not torch.equal(before[unknown], after[unknown]), "the unknown row is learned"
    # no state anywhere for the frozen tables: not in the fused (table) optimizer, not in Adam
    fused = _fused_state_keys(module)
    if sharding == "table_wise":  # data-parallel tables keep their optimizer outside fused_optimizer
        assert any("user__country" in key for key in fused), fused
    assert not any("user_id" in key or "pin_id" in key for key in fused), fused
    frozen = [p for n, p in module.model.named_parameters() if "id_ebc" in n]
    assert frozen
    assert all(not p.requires_grad for p in frozen)
    adam_params = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not adam_params & {id(p) for p in frozen}
    assert not any(id(p) in {id(q) for q in frozen} for p in optimizer.state)
    assert all(not hasattr(p, "_in_backward_optimizers") for p in frozen)


@pytest.mark.parametrize("sharding", ["table_wise", "column_wise"])
def test_fine_tuned_id_tables_train_with_their_own_fused_state(world, process_group, sharding):
    module, gatherers = _module(world, freeze=False, sharding=sharding)
    before = module.export_state_dict()
    _train(module, gatherers, world)
    after = module.export_state_dict()
    for key in ID_TABLES.values():
        assert not torch.equal(before[key], after[key]), f"{key} must train when not frozen"
    fused = _fused_state_keys(module)
    assert any("user__user_id" in key for key in fused)
    assert any("pin__pin_id" in key for key in fused)
    rows = np.arange(150)
    # rows of ids never in a batch keep their values (row-wise sparse update)
    seen = set(world.engagements()["user"].to_numpy()[: 4 * 64].tolist())
    untouched = [r for r in rows if r not in seen]
    key = ID_TABLES["user"]
    assert torch.equal(before[key][untouched], after[key][untouched])
