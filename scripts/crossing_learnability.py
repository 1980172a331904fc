"""Can a crossing module learn the world's feature interaction at all? (supervised learnability)

A diagnostic, not a test. Retrieval metrics mix many effects; this isolates one question: given
only an entity's features (no ID), how much of the world's multiplicative taste part can each
crossing option reproduce for entities it has never seen? For users and for pins it builds the
real tower front end (torchrec EmbeddingBagCollection over the model-visible features, weighted
bags, per-field LayerNorm) and the configured crossing (`conf/model/crossing/*.yaml`), regresses
the true vectors with a linear head, and prints the held-out R² (1 - SSE / SST over all
dimensions), mean ± std over seeds. Two targets per side:

- `interaction`: the multiplicative part the feature-interaction knob adds (recovered exactly as
  the difference between the knob-on and knob-off truths of the same world seed);
- `knob off`: the whole taste vector of the knob-off world (additive in features plus a per-entity
  random part no features explain, so its ceiling is below 1): a check that every option fits
  what a linear model already can.

With `--forms` it asks a wider question on the user side: for interaction forms other than the
world's own (fresh Gaussian factor tables per field, multiplied element-wise, each target scaled
to rms 1), which crossing learns which form? `country x interests` is the form one MaskBlock
computes (a mask from one field times another field); `interests` is the interest set pooled
with the users' weights. Raise the cardinalities to make combinations rare.

Usage:
    python scripts/crossing_learnability.py                       # experiment=crossing's world
    python scripts/crossing_learnability.py --seeds 0 --epochs 5 data.config.n_users=2000
    python scripts/crossing_learnability.py --forms data.config.n_countries=64 data.config.n_age_buckets=12
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra import compose, initialize_config_dir
from torch import nn

from ebr.config import register_schemas, with_default_experiment
from ebr.data.batching import FeatureGatherer
from ebr.data.schema import FeatureTable
from ebr.data.world.config import WorldConfig
from ebr.data.world.entities import UserEntities, draw_pins, draw_users
from ebr.data.world.generate import pin_table, user_table
from ebr.data.world.taste import build_truth, mix_weights
from ebr.models.tower import Tower, TowerSpec

CONF = Path(__file__).resolve().parents[1] / "conf"
SIDES = {
    "user": ("country", "age_bucket", "gender", "interests"),
    "pin": ("interest", "category", "format"),
}
ARMS = {
    "mlp": [],
    "mlp [512,256]": ["model.crossing.hidden=[512,256]"],
    "masknet": [],
    "dhen_cpu": [],
}


def interaction_part(world: WorldConfig, on: np.ndarray, off: np.ndarray, users: bool = True) -> np.ndarray:
    """The knob's multiplicative part c·m/|m| from the knob-on and knob-off vectors (see taste._mix)."""
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
    """1 - SSE / SST over every dimension (SST around the held-out mean)."""
    residual = ((target - predicted) ** 2).sum()
    total = ((target - target.mean(axis=0)) ** 2).sum()
    return float(1.0 - residual / total)


class Regressor(nn.Module):
    """The tower front end and crossing, with a linear head onto the target vectors."""

    def __init__(self, spec: TowerSpec, crossing, target_dim: int) -> None:
        super().__init__()
        self.tower = Tower(spec, crossing, embedding_dim=32, output_dim=target_dim)
        self.head = nn.Linear(self.tower.crossing.output_dim, target_dim)

    def forward(self, sparse, dense) -> torch.Tensor:
        fields = self.tower.fields(sparse, dense)
        return self.head(self.tower.crossing(self.tower.field_norm(fields).flatten(1)))


def fit_r2(
    table: FeatureTable,
    features: tuple[str, ...],
    target: np.ndarray,
    crossing,
    seed: int,
    epochs: int,
    batch_size: int = 256,
) -> float:
    """Held-out R² of one crossing on one target (80% of the entities train, 20% are held out)."""
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (split and init)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument(
        "--forms", action="store_true", help="regress alternative user-side interaction forms instead"
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the world (data.config.*)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    register_schemas()
    seeds = [int(s) for s in args.seeds.split(",")]
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("train", overrides=with_default_experiment(args.overrides, "crossing"))
        crossings = {
            name: hydra.utils.instantiate(
                compose("train", overrides=[f"model/crossing={name.split()[0]}", *extra]).model.crossing
            )
            for name, extra in ARMS.items()
        }
    world: WorldConfig = hydra.utils.instantiate(cfg.data.config)
    if world.feature_interaction * world.interaction_ratio == 0:
        parser.error(
            "the world has no feature interaction (data.config.feature_interaction or interaction_ratio is 0)"
        )
    users = draw_users(world)
    if args.forms:
        print_forms(world, users, crossings, seeds, args.epochs)
        return
    off_world = dataclasses.replace(world, feature_interaction=0.0)
    pins = draw_pins(world)
    on, off = build_truth(world, users, pins), build_truth(off_world, users, pins)
    tables = {"user": user_table(world, users), "pin": pin_table(world, pins)}
    vectors = {"user": (on.user_vectors, off.user_vectors), "pin": (on.pin_vectors, off.pin_vectors)}
    print(
        f"world: {world.n_users} users, {world.n_pins} pins, feature_interaction="
        f"{world.feature_interaction}; seeds {seeds}, {args.epochs} epochs; held-out R² (mean ± std)"
    )
    print("| side | target | " + " | ".join(crossings) + " |")
    print("|---" * (len(crossings) + 2) + "|")
    for side, features in SIDES.items():
        on_vectors, off_vectors = vectors[side]
        part = interaction_part(world, on_vectors, off_vectors, users=side == "user")
        targets = {"interaction": part, "knob off": off_vectors}
        for target_name, target in targets.items():
            cells = []
            for crossing in crossings.values():
                scores = [
                    fit_r2(tables[side], features, target, crossing, seed, args.epochs) for seed in seeds
                ]
                cells.append(_cell(scores))
            print(f"| {side} | {target_name} | " + " | ".join(cells) + " |", flush=True)


def _cell(scores: list[float]) -> str:
    spread = f" ± {np.std(scores, ddof=1):.3f}" if len(scores) > 1 else ""
    return f"{np.mean(scores):.3f}{spread}"


def print_forms(
    world: WorldConfig, users: UserEntities, crossings: dict, seeds: list[int], epochs: int
) -> None:
    """The `--forms` table: held-out R² of each crossing on each user-side interaction form."""
    table = user_table(world, users)
    print(
        f"world: {world.n_users} users, {world.n_countries} countries, {world.n_age_buckets} age buckets, "
        f"{world.n_interests} interests; seeds {seeds}, {epochs} epochs; held-out R² (mean ± std)"
    )
    print("| form | " + " | ".join(crossings) + " |")
    print("|---" * (len(crossings) + 1) + "|")
    for name in user_interaction_forms(world, users, 0):
        cells = []
        for crossing in crossings.values():
            # fresh factor tables per seed, like a fresh world
            scores = [
                fit_r2(
                    table,
                    SIDES["user"],
                    user_interaction_forms(world, users, seed)[name],
                    crossing,
                    seed,
                    epochs,
                )
                for seed in seeds
            ]
            cells.append(_cell(scores))
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
