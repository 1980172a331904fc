"""`model/id_embedding`: how the towers get their user and pin ID features.

- `none`: the towers read no ID feature (`user_id`, `pin_id` are removed from their features);
- `scratch`: the ID tables are ordinary tables of the shared collection, learned with the model
  (the default, and exactly the model of before this option existed);
- `pretrained`: each ID table is initialised from an `ebr-pretrain` snapshot chosen by
  `select_snapshot` (policy, the split's training-window start, the data's source), kept in its
  own collection so it can be frozen (no optimizer state, no update), with one learned unknown row
  for ids the snapshot lacks and whole-vector ID dropout in training.

The pre-trained width must equal `model.embedding_dim` (every field of the towers has that width;
a projection would be a learned layer in front of a "frozen" table): a mismatch is an error naming
both keys.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from ebr.data.schema import SECONDS_PER_DAY, InteractionData, Split
from ebr.evaluation.task import EvalTask
from ebr.models.assembly import Towers
from ebr.models.features import ID_FEATURES, tower_specs
from ebr.pretraining.integrity import verifiable, window_digest
from ebr.pretraining.selection import POLICIES, SnapshotInfo, select_snapshot
from ebr.pretraining.snapshots import Snapshot, load_snapshot

MODES = ("none", "scratch", "pretrained")
SIDE_FEATURES = {"user": "user_sparse", "pin": "pin_sparse"}


@dataclass(frozen=True)
class IdEmbeddingConfig:
    """The `model/id_embedding` part (built by Hydra from the group's option).

    Args:
        mode: "none", "scratch" or "pretrained".
        freeze: (pretrained) freeze the pre-trained tables.
        dropout: (pretrained) per-example probability of dropping the whole ID vector in training.
        snapshot_policy: (pretrained) "latest" or "latest_no_overlap".
        snapshot_dir: (pretrained) the `ebr-pretrain` snapshot set's directory.
        skip_damaged: (pretrained) skip a damaged or mismatching newest snapshot with a logged
            warning and take the next one; false (the default) stops the job naming it.
    """

    mode: str = "scratch"
    freeze: bool = True
    dropout: float = 0.0
    snapshot_policy: str = "latest_no_overlap"
    snapshot_dir: str | None = None
    skip_damaged: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"model.id_embedding.mode={self.mode!r} is not one of {list(MODES)}")
        if self.mode != "pretrained":
            if self.dropout:
                # a silent no-op would let a sweep "measure" dropout on tables that have none
                raise ValueError(
                    f"model.id_embedding.dropout applies to pretrained ID tables only, not {self.mode!r}"
                )
            return
        if self.snapshot_policy not in POLICIES:
            raise ValueError(
                f"model.id_embedding.snapshot_policy={self.snapshot_policy!r} is not one of {list(POLICIES)}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.id_embedding.dropout must be in [0, 1), got {self.dropout}")
        if not self.snapshot_dir:
            raise ValueError("model.id_embedding.snapshot_dir must name an ebr-pretrain snapshot directory")

    def apply(self, towers: Towers, data: InteractionData, split: Split) -> Towers:
        """The towers with their ID features as this mode has them (a TowerPart).

        `none` drops the ID features; `scratch` keeps them as ordinary tables; `pretrained` loads
        the snapshot (kept in `towers.sources["id_embedding"]` for serving's coverage), gives each
        tower its separate ID table, records freeze and dropout in the network config and copies
        the snapshot in when the model is built.

        Args:
            towers: the towers as the parts before this one left them.
            data: the data set.
            split: the fitted split (the snapshot policy reads its training window).
        """
        manifest = {**towers.manifest, "id_embedding": self.mode}
        if self.mode == "none":
            features = select_id_features(towers.features, self)
            user_spec, pin_spec = tower_specs(data, features)
            return replace(
                towers, features=features, user_spec=user_spec, pin_spec=pin_spec, manifest=manifest
            )
        if self.mode == "scratch":
            return replace(towers, manifest=manifest)
        pretrained = load_pretrained_ids(self, data, split, towers.features)
        check_dim(pretrained, int(towers.network["embedding_dim"]))
        user_spec, pin_spec = (
            replace(spec, id_feature=ID_FEATURES[side], id_rows=len(pretrained.snapshot.ids[side]))
            for side, spec in (("user", towers.user_spec), ("pin", towers.pin_spec))
        )
        return replace(
            towers,
            user_spec=user_spec,
            pin_spec=pin_spec,
            # only a pre-trained model's config gains these keys: scratch saves today's model.pt
            network={**towers.network, "id_freeze": self.freeze, "id_dropout": self.dropout},
            init=functools.partial(init_id_tables, pretrained=pretrained),
            manifest=manifest,
            metrics={**towers.metrics, **pretrained.metrics()},
            sources={**towers.sources, "id_embedding": pretrained},
        )

    @staticmethod
    def of(node: Mapping[str, Any] | None) -> IdEmbeddingConfig:
        """Build from the config node.

        Args:
            node: the `model.id_embedding` node as a plain mapping (None: scratch).
        """
        return IdEmbeddingConfig(**dict(node or {}))


def select_id_features(features: dict[str, list[str]], config: IdEmbeddingConfig) -> dict[str, list[str]]:
    """The towers' features under `config`: without the ID features for `none`, as they are else.

    Args:
        features: the resolved feature lists (`resolve_features`).
        config: the `model.id_embedding` settings.
    """
    if config.mode != "none":
        return features
    ids = set(ID_FEATURES.values())
    return {
        key: [f for f in names if f not in ids] if key.endswith("_sparse") else names
        for key, names in features.items()
    }


@dataclass
class PretrainedIds:
    """The chosen snapshot and each side's raw id -> snapshot row mapping.

    Args:
        info: the snapshot `select_snapshot` chose.
        snapshot: its tables and ids.
        policy: the policy it was chosen by.
        train_start: this job's training window start (the overlap is laid against it).
        rows: side -> (n_entities,) int64 row of each data id, -1 where the snapshot has none.
    """

    info: SnapshotInfo
    snapshot: Snapshot
    policy: str
    train_start: int
    rows: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.snapshot.tables["user"].shape[1])

    def describe(self) -> dict[str, Any]:
        """What run.json records: the snapshot's path, window and policy."""
        return {
            "path": str(self.info.path),
            "policy": self.policy,
            "window": {
                "start": self.info.start,
                "end": self.info.end,
                "start_day": self.info.start / SECONDS_PER_DAY,
                "end_day": self.info.end / SECONDS_PER_DAY,
            },
            # from the verified window and this job's training start, not the manifest's own flag
            "overlaps_train": self.info.end > self.train_start,
            "verified": verifiable(self.info.manifest),
        }

    def metrics(self) -> dict[str, float]:
        """The snapshot's window as numbers (metrics.json holds numbers only)."""
        return {
            "id_embedding/snapshot_start_day": self.info.start / SECONDS_PER_DAY,
            "id_embedding/snapshot_end_day": self.info.end / SECONDS_PER_DAY,
            "id_embedding/snapshot_overlaps_train": float(self.describe()["overlaps_train"]),
            "id_embedding/snapshot_verified": float(verifiable(self.info.manifest)),
        }

    def coverage(self, task: EvalTask) -> dict[str, float]:
        """`id_coverage/user`: share of the evaluated (test) users whose id is in the snapshot;
        `id_coverage/pin`: share of the serving corpus's pins whose id is in the snapshot.

        Both read what serving knows (who asks, what is indexed), never the test labels.

        Args:
            task: the evaluation task (its users and corpus).
        """

        def share(side: str, ids: np.ndarray) -> float:
            return float(np.mean(self.rows[side][ids] >= 0)) if len(ids) else 0.0

        return {
            "id_coverage/user": share("user", task.user_ids),
            "id_coverage/pin": share("pin", task.corpus),
        }


def load_pretrained_ids(
    config: IdEmbeddingConfig, data: InteractionData, split: Split, features: Mapping[str, list[str]]
) -> PretrainedIds:
    """Choose the snapshot for this job and map every data id to its row.

    Args:
        config: a `pretrained` config.
        data: the data set (its `source` must be the snapshot's `data_source`).
        split: the split; its training window's start is what the snapshot policy is laid against.
        features: the towers' features (both ID features must be among them).

    Raises:
        SnapshotSelectionError: from `select_snapshot` (none qualifies, the newest is damaged or
            does not match its manifest or this data's events, or another data set).
        ValueError: for a split without a global training window, or a missing ID feature.
    """
    if "train" not in split.windows:
        raise ValueError(
            "model/id_embedding=pretrained needs a split with a global training window "
            "(split=global_temporal): the snapshot policy is laid against its start"
        )
    for side, feature in ID_FEATURES.items():
        if feature not in features[SIDE_FEATURES[side]]:
            raise ValueError(
                f"model/id_embedding=pretrained: features.{SIDE_FEATURES[side]} lacks {feature!r}"
            )
    train_start = int(split.windows["train"][0])
    info = select_snapshot(
        config.snapshot_dir,
        config.snapshot_policy,
        train_start,
        data.source,
        # the snapshot's window is checked against this job's own events, not taken on trust
        window_events=functools.partial(window_digest, data.engagements()),
        skip_damaged=config.skip_damaged,
    )
    snapshot = load_snapshot(info)
    sizes = {"user": data.users.n_rows, "pin": data.pins.n_rows}
    rows = {side: snapshot.rows(side, np.arange(n, dtype=np.int64)) for side, n in sizes.items()}
    return PretrainedIds(info, snapshot, config.snapshot_policy, train_start, rows)


@torch.no_grad()
def init_id_tables(model: nn.Module, pretrained: PretrainedIds) -> nn.Module:
    """Copy the snapshot into the towers' separate ID tables (before sharding); returns `model`.

    Row i of a table is the snapshot's row i; the mapping buffer sends each data id to its row
    (-1: unknown); the unknown row starts at the mean snapshot row (an "average entity") and is
    learned from there.

    Args:
        model: a TwoTowerModel whose towers have `id_ebc` (specs with `id_feature`).
        pretrained: the loaded snapshot and mappings.
    """
    for side, tower in (("user", model.user_tower), ("pin", model.pin_tower)):
        table = pretrained.snapshot.tables[side].float()
        (weight,) = tower.id_ebc.parameters()
        if weight.shape != table.shape:
            raise ValueError(f"{side} ID table {tuple(weight.shape)} vs snapshot {tuple(table.shape)}")
        weight.copy_(table)
        tower.id_rows.copy_(torch.from_numpy(pretrained.rows[side]))
        tower.id_unknown.copy_(table.mean(dim=0) if len(table) else torch.zeros(table.shape[1]))
    return model


def check_dim(pretrained: PretrainedIds, embedding_dim: int) -> None:
    """Refuse a snapshot whose width is not the towers' field width.

    Args:
        pretrained: the loaded snapshot.
        embedding_dim: `model.embedding_dim`.
    """
    if pretrained.dim != embedding_dim:
        raise ValueError(
            f"snapshot {pretrained.info.path.name} has {pretrained.dim}-wide ID rows but "
            f"model.embedding_dim={embedding_dim}: pre-train with pretrain.embedding_dim={embedding_dim} "
            f"or train with model.embedding_dim={pretrained.dim}"
        )
