"""TwoTowerModule on a tiny world: fused sparse updates, NaN guard, and export parity with serving."""

from functools import partial

import numpy as np
import pytest
import torch
from tiny_model import tiny_model_config

from ebr.data.batching import FeatureGatherer, make_batch
from ebr.models.artifact import build_model
from ebr.models.features import resolve_features, tower_specs
from ebr.models.loss import SampledSoftmaxLoss
from ebr.training.distributed import FusedTableOptimizer
from ebr.training.module import NonFiniteLossError, TwoTowerModule

MODEL_CONFIG = tiny_model_config(32, 8, 16)


def _setup(world, sharding="table_wise", loss=None):
    names = ["user_sparse", "user_dense", "pin_sparse", "pin_dense"]
    features = resolve_features(dict.fromkeys(names), world)
    user_spec, pin_spec = tower_specs(world, features)
    torch.manual_seed(0)
    module = TwoTowerModule(
        model_factory=partial(build_model, MODEL_CONFIG, user_spec, pin_spec),
        loss=loss or SampledSoftmaxLoss(),
        sharding=sharding,
        sparse_optimizer=FusedTableOptimizer(lr=0.5),
    )
    module.configure_model()
    engagements = world.engagements()
    batch = make_batch(
        FeatureGatherer(world.users, features["user_sparse"], features["user_dense"]),
        FeatureGatherer(world.pins, features["pin_sparse"], features["pin_dense"]),
        engagements["user"].to_numpy()[:64],
        engagements["pin"].to_numpy()[:64],
    )
    return module, batch, user_spec, pin_spec


@pytest.mark.parametrize("sharding", ["table_wise", "column_wise", "data_parallel"])
def test_step_updates_tables_and_dense_and_export_matches(world, process_group, sharding):
    module, batch, user_spec, pin_spec = _setup(world, sharding)
    optimizer = module.configure_optimizers()
    before = module.export_state_dict()
    loss = module.training_step(batch, 0)
    optimizer.zero_grad()
    loss.backward()  # the fused optimizer updates the tables inside backward
    optimizer.step()
    after = module.export_state_dict()
    table = "user_tower.ebc.embedding_bags.user__user_id.weight"
    rows = batch.user.ids.unique()
    assert not torch.allclose(before[table][rows], after[table][rows]), "engaged users' rows must move"
    untouched = np.setdiff1d(np.arange(world.users.n_rows), rows.numpy())
    assert torch.equal(before[table][untouched], after[table][untouched]), "row-wise sparse update only"
    dense = "user_tower.projection.weight"
    assert not torch.equal(before[dense], after[dense])

    served = build_model(MODEL_CONFIG, user_spec, pin_spec)
    served.load_state_dict(after)
    served.eval()
    module.model.eval()
    with torch.no_grad():
        sharded_user, sharded_pin, _ = module.model(batch)
        plain_user, plain_pin, _ = served(batch)
    torch.testing.assert_close(plain_user, sharded_user, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(plain_pin, sharded_pin, rtol=1e-5, atol=1e-6)


class _NanLoss(SampledSoftmaxLoss):
    def forward(self, user, *args, **kwargs):
        return super().forward(user, *args, **kwargs) * float("nan")


def test_non_finite_loss_stops_training_with_a_clear_message(world, process_group):
    module, batch, *_ = _setup(world, loss=_NanLoss())
    expected = r"training loss is nan at epoch 0, batch 7.*lower train.dense_lr"
    with pytest.raises(NonFiniteLossError, match=expected):
        module.training_step(batch, 7)
