"""A tower pools each categorical bag as the weighted average its input weights describe."""

from __future__ import annotations

import functools

import numpy as np
import torch

from ebr.data.batching import FeatureGatherer
from ebr.data.schema import CategoricalFeature, FeatureTable
from ebr.models.crossing.mlp import MLPCrossing
from ebr.models.tower import Tower, TowerSpec


def test_fields_are_weighted_averages_of_table_rows() -> None:
    torch.manual_seed(0)
    offsets = np.array([0, 3, 4, 6])
    values = np.array([0, 2, 5, 1, 3, 3])
    weights = np.array([0.5, 0.3, 0.2, 1.0, 0.25, 0.75], dtype=np.float32)
    table = FeatureTable(
        3,
        categorical={
            "user_id": CategoricalFeature.single(np.arange(3), 3),
            "interests": CategoricalFeature(offsets, values, 6, weights),
        },
    )
    spec = TowerSpec(name="user", sparse={"user_id": 3, "interests": 6})
    tower = Tower(spec, functools.partial(MLPCrossing, hidden=[8]), embedding_dim=4, output_dim=3)
    inputs = FeatureGatherer(table, ["user_id", "interests"], [])(np.array([2, 0, 1]))
    with torch.no_grad():
        fields = tower.fields(inputs.sparse, inputs.dense).numpy()
    interest_rows = tower.ebc.embedding_bags["user__interests"].weight.detach().numpy()
    id_rows = tower.ebc.embedding_bags["user__user_id"].weight.detach().numpy()
    for position, row in enumerate([2, 0, 1]):
        bag = slice(offsets[row], offsets[row + 1])
        own = weights[bag] / weights[bag].sum()
        expected = (own[:, None] * interest_rows[values[bag]]).sum(axis=0)
        np.testing.assert_allclose(fields[position, 1], expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(fields[position, 0], id_rows[row], rtol=1e-6)
    # row 2 holds interest 3 twice (weights 0.25 and 0.75): the average is that row itself
    np.testing.assert_allclose(fields[0, 1], interest_rows[3], rtol=1e-5)
