"""Can a crossing module learn the world's feature interaction at all? (`scripts/crossing_learnability.py`)

Given only an entity's features (no ID), how much of the world's multiplicative taste part can each
crossing option reproduce for entities it has never seen? `fit_r2` builds the real tower front end
(torchrec EmbeddingBagCollection over the model-visible features, weighted bags, per-field
LayerNorm) and a crossing, regresses target vectors with a linear head, and returns the held-out R².
The targets: `interaction_part` (the knob's multiplicative part, recovered exactly from the knob-on
and knob-off truths of one world seed) and `user_interaction_forms` (other user-side forms).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch import nn

from ebr.data.batching import FeatureGatherer
from ebr.data.schema import FeatureTable
from ebr.data.world.config import WorldConfig
from ebr.data.world.entities import UserEntities
from ebr.data.world.taste import mix_weights
from ebr.models.tower import CrossingFactory, Tower, TowerSpec

# the model-visible features of each side's tower
SIDES = {
    "user": ("country", "age_bucket", "gender", "interests"),
    "pin": ("interest", "category", "format"),
}


def interaction_part(world: WorldConfig, on: np.ndarray, off: np.ndarray, users: bool = True) -> np.ndarray:
    """The knob's multiplicative part c·m/|m| from the knob-on and knob-off vectors (see taste._mix).

    Args:
        world: the knob-on world.
        on: the knob-on world's taste vectors (users' or pins').
        off: the same entities' vectors in the knob-off world.
        users: whether the vectors are the users' (else the pins').
    """
    off_world = dataclasses.replace(world, feature_interaction=0.0)
    return on * mix_weights(world, users)[3] - off * mix_weights(off_world, users)[3]


def user_interaction_forms(world: WorldConfig, users: UserEntities, seed: int) -> dict[str, np.ndarray]:
    """Candidate multiplicative forms of a user-side interaction, each scaled to rms norm 1.

    Args:
        world: the world config (cardinalities and latent_dim).
        users: the users' observable attributes.
        seed: seed of the Gaussian factor tables.
    """
    rng = np.random.default_rng(seed)
    dim = world.latent_dim
    country, age, interest = (
        rng.standard_normal((n, dim)) for n in (world.n_countries, world.n_age_buckets, world.n_interests)
    )
    weighted = users.interest_weights[:, None] * interest[users.interest_values]
    interests = np.add.reduceat(weighted, users.interest_offsets[:-1], axis=0)
    forms = {
        "country x age x top interest (the world's)": country[users.country]
        * age[users.age_bucket]
        * interest[users.top_interest],
        "country x interests": country[users.country] * interests,
        "country x age x interests": country[users.country] * age[users.age_bucket] * interests,
        "country x age": country[users.country] * age[users.age_bucket],
    }
    return {name: form / np.sqrt(np.mean(np.sum(form**2, axis=1))) for name, form in forms.items()}


def held_out_r2(predicted: np.ndarray, target: np.ndarray) -> float:
    """1 - SSE / SST over every dimension (SST around the held-out mean).

    Args:
        predicted: (entities, dim) predictions.
        target: (entities, dim) targets.
    """
    residual = ((target - predicted) ** 2).sum()
    total = ((target - target.mean(axis=0)) ** 2).sum()
    return float(1.0 - residual / total)


class Regressor(nn.Module):
    """The tower front end and crossing, with a linear head onto the target vectors.

    Args:
        spec: the tower's features.
        crossing: builds the crossing module (as `conf/model/crossing/*.yaml` instantiates).
        target_dim: the targets' dimension.
    """

    def __init__(self, spec: TowerSpec, crossing: CrossingFactory, target_dim: int) -> None:
        super().__init__()
        self.tower = Tower(spec, crossing, embedding_dim=32, output_dim=target_dim)
        self.head = nn.Linear(self.tower.crossing.output_dim, target_dim)

    def forward(self, sparse: Any, dense: torch.Tensor | None) -> torch.Tensor:
        fields = self.tower.fields(sparse, dense)
        return self.head(self.tower.crossing(self.tower.field_norm(fields).flatten(1)))


def fit_r2(
    table: FeatureTable,
    features: tuple[str, ...],
    target: np.ndarray,
    crossing: CrossingFactory,
    seed: int,
    epochs: int,
    batch_size: int = 256,
) -> float:
    """Held-out R² of one crossing on one target (80% of the entities train, 20% are held out).

    Args:
        table: the entities' feature table.
        features: the features the tower reads.
        target: (entities, dim) target vectors.
        crossing: builds the crossing module.
        seed: the split's, the initialisation's and the batches' seed.
        epochs: passes over the training entities.
        batch_size: entities per step.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(table.n_rows)
    train, test = order[: int(0.8 * len(order))], order[int(0.8 * len(order)) :]
    spec = TowerSpec("learn", {name: table.categorical[name].cardinality for name in features})
    gather = FeatureGatherer(table, list(features), [], "learnability")
    torch.manual_seed(seed)
    model = Regressor(spec, crossing, target.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    y = torch.from_numpy(target.astype(np.float32))
    for _ in range(epochs):
        for rows in np.array_split(rng.permutation(train), max(1, len(train) // batch_size)):
            inputs = gather(rows)
            loss = ((model(inputs.sparse, inputs.dense) - y[rows]) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        inputs = gather(test)
        predicted = model(inputs.sparse, inputs.dense).numpy()
    return held_out_r2(predicted, target[test])
