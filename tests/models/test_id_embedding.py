"""A tower's separate (pre-trained) ID table: snapshot rows in the mapped ids, the unknown row for
the rest, and whole-vector ID dropout at its rate in training and never in eval mode."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from ebr.data.batching import FeatureGatherer
from ebr.data.schema import CategoricalFeature, FeatureTable
from ebr.models.crossing.mlp import MLPCrossing
from ebr.models.tower import Tower, TowerSpec

N_USERS, DIM = 2000, 4
# the snapshot knows every third user: row i is user KNOWN[i]
KNOWN = np.arange(0, N_USERS, 3)


def _table() -> FeatureTable:
    return FeatureTable(
        N_USERS,
        categorical={
            "user_id": CategoricalFeature.single(np.arange(N_USERS), N_USERS),
            "country": CategoricalFeature.single(np.arange(N_USERS) % 5, 5),
        },
    )


def _tower(dropout: float = 0.0, freeze: bool = True) -> Tower:
    torch.manual_seed(0)
    spec = TowerSpec("user", {"user_id": N_USERS, "country": 5}, id_feature="user_id", id_rows=len(KNOWN))
    tower = Tower(
        spec,
        functools.partial(MLPCrossing, hidden=[8]),
        embedding_dim=DIM,
        output_dim=3,
        id_freeze=freeze,
        id_dropout=dropout,
    )
    rows = np.full(N_USERS, -1, dtype=np.int64)
    rows[KNOWN] = np.arange(len(KNOWN))
    with torch.no_grad():
        tower.id_ebc.embedding_bags["user__user_id"].weight.copy_(
            torch.arange(len(KNOWN) * DIM, dtype=torch.float32).reshape(-1, DIM) + 1.0
        )
        tower.id_rows.copy_(torch.from_numpy(rows))
        tower.id_unknown.fill_(-7.0)
    return tower


def _inputs(rows: np.ndarray):
    return FeatureGatherer(_table(), ["user_id", "country"], [])(rows)


def test_mapped_ids_get_their_snapshot_rows_and_the_rest_the_unknown_row() -> None:
    tower = _tower().eval()
    rows = np.array([0, 1, 3, 2, 1998, 1999])
    with torch.no_grad():
        field = tower.id_field(_inputs(rows).sparse).numpy()
    table = tower.id_ebc.embedding_bags["user__user_id"].weight.detach().numpy()
    for position, user in enumerate(rows):
        if user % 3 == 0:
            np.testing.assert_array_equal(field[position], table[user // 3])
        else:
            np.testing.assert_array_equal(field[position], np.full(DIM, -7.0, np.float32))
    # and the shared collection no longer holds an ID table
    assert "user__user_id" not in tower.ebc.embedding_bags
    assert tower.fields(_inputs(rows).sparse, _inputs(rows).dense).shape == (len(rows), 2, DIM)


@pytest.mark.parametrize("rate", [0.0, 0.3, 0.5])
def test_dropout_drops_whole_vectors_at_its_rate_in_training_only(rate: float) -> None:
    tower = _tower(dropout=rate)
    rows = np.arange(N_USERS)
    inputs = _inputs(rows)
    tower.train()
    torch.manual_seed(1)
    with torch.no_grad():
        field = tower.id_field(inputs.sparse)
    zero = (field == 0).all(dim=1)
    partial = ((field == 0).any(dim=1) & ~zero).sum().item()
    assert partial == 0, "a vector is dropped whole or not at all"
    # 2000 Bernoulli(rate) draws: 4.5 standard deviations of tolerance
    tolerance = 4.5 * np.sqrt(max(rate * (1 - rate), 1e-12) / N_USERS)
    assert abs(zero.float().mean().item() - rate) <= tolerance + 1e-9
    # kept rows are untouched (no 1/(1-p) rescaling)
    tower.eval()
    with torch.no_grad():
        clean = tower.id_field(inputs.sparse)
    assert torch.equal(field[~zero], clean[~zero])
    assert not (clean == 0).all(dim=1).any(), "eval mode never drops"
    # independent draws per call in training: a second call drops other examples
    if rate > 0:
        tower.train()
        with torch.no_grad():
            again = (tower.id_field(inputs.sparse) == 0).all(dim=1)
        assert not torch.equal(again, zero)


def test_bad_dropout_and_a_multi_valued_id_are_refused() -> None:
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        _tower(dropout=1.0)
    tower = _tower()
    table = FeatureTable(
        2,
        categorical={
            "user_id": CategoricalFeature(np.array([0, 2, 3]), np.array([0, 1, 1]), N_USERS),
            "country": CategoricalFeature.single(np.array([0, 1]), 5),
        },
    )
    inputs = FeatureGatherer(table, ["user_id", "country"], [])(np.array([0, 1]))
    with pytest.raises(ValueError, match="one id per row"):
        tower.id_field(inputs.sparse)
