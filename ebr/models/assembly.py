"""The towers as their parts shape them: what a training builds and `model.pt` saves.

A two-tower model is assembled from optional parts, each chosen by its own config group and built
by Hydra (`model/id_embedding`, `model/conditioning`, `model/user_encoder`; the crossing,
`model/crossing`, is a factory inside the network config). Each part is a `TowerPart`: it receives
the towers as the parts before it left them and returns them changed (features, specs, network
config, initialisation, batch conditions, manifest, metrics), so a new technique is one more part,
not one more argument of every constructor on the way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
from torch import nn

from ebr.data.schema import InteractionData, Split
from ebr.models.artifact import build_model
from ebr.models.features import tower_specs
from ebr.models.tower import TowerSpec


@dataclass(frozen=True)
class Towers:
    """What the towers are, once their parts (ID embeddings, conditioning) have shaped them.

    Args:
        network: the network's config as `model.pt` saves it (a `_partial_` TwoTowerModel missing
            only the tower specs).
        features: {"user_sparse", "user_dense", "pin_sparse", "pin_dense"} feature name lists.
        user_spec: the user tower's input spec.
        pin_spec: the pin tower's input spec.
        init: applied to the freshly built, unsharded model (e.g. copying pre-trained ID tables in);
            None: the model as built.
        condition_of: maps a window's engagement rows to their condition interests (conditional
            retrieval); None: unconditioned batches.
        sequences_of: maps the training window to its examples' own sequences (the sequence user
            tower, ebr.models.user_encoder); None: none.
        manifest: what the parts add to `model.pt`'s manifest (e.g. the ID embedding mode).
        metrics: what the parts report among the training metrics (e.g. the ID snapshot's window).
        sources: what the parts read besides the data, by part (e.g. the pre-trained ID snapshot),
            for the caller's serving.
    """

    network: dict[str, Any]
    features: dict[str, list[str]]
    user_spec: TowerSpec
    pin_spec: TowerSpec
    init: Callable[[nn.Module], nn.Module] | None = None
    condition_of: Callable[[pd.DataFrame], np.ndarray] | None = None
    sequences_of: Callable[[pd.DataFrame], Any] | None = None
    manifest: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    sources: Mapping[str, Any] = field(default_factory=dict)

    def build(self) -> nn.Module:
        """The unsharded model, initialised by `init`."""
        model = build_model(self.network, self.user_spec, self.pin_spec)
        return model if self.init is None else self.init(model)


def plain_towers(
    network: Mapping[str, Any], features: Mapping[str, list[str]], data: InteractionData
) -> Towers:
    """The towers before any part: every chosen feature, the network config as given.

    Args:
        network: the network config (`_partial_` TwoTowerModel less the specs).
        features: the resolved feature lists (ebr.models.features.resolve_features).
        data: the data set (the specs' cardinalities).
    """
    user_spec, pin_spec = tower_specs(data, features)
    return Towers(dict(network), dict(features), user_spec, pin_spec)


class TowerPart(Protocol):
    """An optional piece of the towers, built by Hydra from its config group."""

    def apply(self, towers: Towers, data: InteractionData, split: Split) -> Towers:
        """The towers with this part (unchanged when the part is off).

        Args:
            towers: the towers as the parts before this one left them.
            data: the data set.
            split: the fitted split.
        """
        ...
