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

The regression is `ebr.diagnostics.learnability`; this script is its command line.

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

from ebr.config import register_schemas, with_default_experiment
from ebr.data.world.config import WorldConfig
from ebr.data.world.entities import UserEntities, draw_pins, draw_users
from ebr.data.world.generate import pin_table, user_table
from ebr.data.world.taste import build_truth
from ebr.diagnostics.learnability import SIDES, fit_r2, interaction_part, user_interaction_forms

CONF = Path(__file__).resolve().parents[1] / "conf"
ARMS = {
    "mlp": [],
    "mlp [512,256]": ["model.crossing.hidden=[512,256]"],
    "masknet": [],
    "dhen_cpu": [],
}


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
