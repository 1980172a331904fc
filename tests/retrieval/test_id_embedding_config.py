"""`model/id_embedding` without training: option checks, the `none` feature lists, and the refusals
(another data set's snapshot, a width mismatch, a split without a training window)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ebr.data.batching import FeatureGatherer
from ebr.data.splits import global_temporal_split
from ebr.data.world import WorldConfig, generate_world
from ebr.models.artifact import build_model
from ebr.models.features import resolve_features, tower_specs
from ebr.pretraining.selection import SnapshotSelectionError
from ebr.pretraining.snapshots import save_snapshot
from ebr.retrieval.id_embedding import (
    IdEmbeddingConfig,
    check_dim,
    init_id_tables,
    load_pretrained_ids,
    select_id_features,
)

FEATURE_KEYS = ["user_sparse", "user_dense", "pin_sparse", "pin_dense"]


@pytest.fixture(scope="module")
def world():
    data = generate_world(WorldConfig(n_users=120, n_pins=80, n_interests=4, n_days=20))
    return data, global_temporal_split(data, train_days=5)


def _snapshot(directory, data, split, source=None, dim=8):
    train_start = int(split.windows["train"][0])
    generator = torch.Generator().manual_seed(0)
    ids = {"user": np.arange(0, data.users.n_rows, 2), "pin": np.arange(0, data.pins.n_rows, 3)}
    tables = {side: torch.randn(len(ids[side]), dim, generator=generator) for side in ids}
    window = {"start": train_start - 5 * 86_400, "end": train_start}
    manifest = {"window": window, "data_source": source or data.source, "overlaps_train": False}
    return save_snapshot(directory, tables, ids, manifest), tables, ids


def _config(directory) -> IdEmbeddingConfig:
    return IdEmbeddingConfig(mode="pretrained", snapshot_dir=str(directory), dropout=0.5)


def test_options_are_checked() -> None:
    assert IdEmbeddingConfig.of(None).mode == "scratch"
    with pytest.raises(ValueError, match="not one of"):
        IdEmbeddingConfig(mode="frozen")
    with pytest.raises(ValueError, match="snapshot_policy"):
        IdEmbeddingConfig(mode="pretrained", snapshot_dir="x", snapshot_policy="newest")
    with pytest.raises(ValueError, match="snapshot_dir"):
        IdEmbeddingConfig(mode="pretrained")
    with pytest.raises(ValueError, match="dropout"):
        IdEmbeddingConfig(mode="pretrained", snapshot_dir="x", dropout=1.0)
    with pytest.raises(ValueError, match="pretrained ID tables only"):
        IdEmbeddingConfig(mode="scratch", dropout=0.5)


def test_none_drops_exactly_the_id_features(world) -> None:
    data, _ = world
    features = resolve_features(dict.fromkeys(FEATURE_KEYS), data)
    without = select_id_features(features, IdEmbeddingConfig(mode="none"))
    assert without["user_sparse"] == [f for f in features["user_sparse"] if f != "user_id"]
    assert without["pin_sparse"] == [f for f in features["pin_sparse"] if f != "pin_id"]
    assert "user_id" in features["user_sparse"]
    assert select_id_features(features, IdEmbeddingConfig()) == features


def test_the_loaded_model_holds_the_snapshot_rows_and_the_unknown_row(world, tmp_path) -> None:
    data, split = world
    _, tables, ids = _snapshot(tmp_path, data, split)
    features = resolve_features(dict.fromkeys(FEATURE_KEYS), data)
    pretrained = load_pretrained_ids(_config(tmp_path), data, split, features)
    check_dim(pretrained, 8)
    user_spec, pin_spec = tower_specs(data, features)
    user_spec = dataclasses.replace(user_spec, id_feature="user_id", id_rows=len(ids["user"]))
    pin_spec = dataclasses.replace(pin_spec, id_feature="pin_id", id_rows=len(ids["pin"]))
    config = {
        "_target_": "ebr.models.two_tower.TwoTowerModel",
        "_partial_": True,
        "crossing": {"_target_": "ebr.models.crossing.mlp.MLPCrossing", "_partial_": True, "hidden": [8]},
        "embedding_dim": 8,
        "output_dim": 4,
        "id_freeze": True,
    }
    model = init_id_tables(build_model(config, user_spec, pin_spec), pretrained).eval()
    for side, tower, table in (("user", model.user_tower, data.users), ("pin", model.pin_tower, data.pins)):
        rows = np.arange(table.n_rows)
        feature = "user_id" if side == "user" else "pin_id"
        inputs = FeatureGatherer(table, [feature], [])(rows)
        with torch.no_grad():
            field = tower.id_field(inputs.sparse)
        known = np.isin(rows, ids[side])
        torch.testing.assert_close(field[known], tables[side], rtol=0, atol=0)
        unknown = tables[side].mean(dim=0).expand(int((~known).sum()), -1)
        torch.testing.assert_close(field[~known], unknown, rtol=0, atol=0)
    assert pretrained.describe()["path"].endswith(f"-{int(split.windows['train'][0]):011d}")


def test_another_data_sets_snapshot_and_a_width_mismatch_are_refused(world, tmp_path) -> None:
    data, split = world
    features = resolve_features(dict.fromkeys(FEATURE_KEYS), data)
    _snapshot(tmp_path / "other", data, split, source="synthetic:someotherworld")
    with pytest.raises(SnapshotSelectionError, match=r"(?s)synthetic:someotherworld.*" + data.source):
        load_pretrained_ids(_config(tmp_path / "other"), data, split, features)
    _snapshot(tmp_path / "wide", data, split, dim=16)
    pretrained = load_pretrained_ids(_config(tmp_path / "wide"), data, split, features)
    with pytest.raises(ValueError, match=r"16-wide.*model.embedding_dim=8.*pretrain.embedding_dim=8"):
        check_dim(pretrained, 8)
    no_windows = dataclasses.replace(split, windows={})
    with pytest.raises(ValueError, match="global_temporal"):
        load_pretrained_ids(_config(tmp_path / "wide"), data, no_windows, features)
    without_ids = select_id_features(features, IdEmbeddingConfig(mode="none"))
    with pytest.raises(ValueError, match="lacks 'user_id'"):
        load_pretrained_ids(_config(tmp_path / "wide"), data, split, without_ids)
