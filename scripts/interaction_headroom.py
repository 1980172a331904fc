"""How much the synthetic world's feature-interaction knob matters to an ideal ranker (headroom).

A diagnostic, not a test. It ranks the evaluation task's corpus by the world's *true* score, then
by the true score with the multiplicative (feature-interaction) taste parts replaced by those of the
knob-off world (same seed, same additive and random parts), and prints both rankings' metrics. The
gap bounds what any crossing module can gain from the phenomenon on this world and protocol: a
model that learned the interaction perfectly would close it, a model blind to it would not.

Usage:
    python scripts/interaction_headroom.py                          # experiment=crossing
    python scripts/interaction_headroom.py data.config.interaction_ratio=2.0
    python scripts/interaction_headroom.py experiment=crossing_isolated
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import hydra
import numpy as np
from hydra import compose, initialize_config_dir

from ebr.config import register_schemas, with_default_experiment
from ebr.data.world.config import WorldConfig
from ebr.data.world.generate import generate_world
from ebr.data.world.truth import SyntheticTruth
from ebr.evaluation.protocol import evaluate_ranking
from ebr.evaluation.task import EvalTask, build_eval_task
from ebr.serving.corpus import training_window_corpus

CONF = Path(__file__).resolve().parents[1] / "conf"
SHOWN = ("recall@100", "ndcg@100", "sim/engaged_sessions", "sim/repins")


def true_ranking(truth: SyntheticTruth, task: EvalTask, depth: int) -> np.ndarray:
    """The corpus ranked per task user by `truth`'s score at the task's time, train pins excluded."""
    scores = truth.true_score(task.user_ids[:, None], task.corpus[None, :], task.timestamp)
    if task.exclude is not None:
        rows = task.exclude.row_of_value()
        scores[rows, np.searchsorted(task.corpus, task.exclude.values)] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
    return task.corpus[order]


def main(overrides: list[str]) -> None:
    register_schemas()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("train", overrides=with_default_experiment(overrides, "crossing"))
    world: WorldConfig = hydra.utils.instantiate(cfg.data.config)
    data = generate_world(world)
    split = hydra.utils.instantiate(cfg.split)(data)
    task = build_eval_task(split, training_window_corpus(split))
    simulation = hydra.utils.instantiate(cfg.eval.simulation)
    depth = max(100, simulation.candidates)
    additive = generate_world(dataclasses.replace(world, feature_interaction=0.0)).truth
    truth = data.truth
    rankings = {
        "true score": truth,
        "interaction removed (users and pins)": dataclasses.replace(
            truth, user_vectors=additive.user_vectors, pin_vectors=additive.pin_vectors
        ),
    }
    print(f"world: {cfg.data.config.n_users} users, feature_interaction={world.feature_interaction}")
    print(f"task: {len(task.user_ids)} users, corpus {len(task.corpus)} pins")
    print("| ranking | " + " | ".join(SHOWN) + " |")
    print("|---" * (len(SHOWN) + 1) + "|")
    for name, ranker in rankings.items():
        metrics = evaluate_ranking(task, true_ranking(ranker, task, depth), [100], truth, simulation)
        print(f"| {name} | " + " | ".join(f"{metrics[k]:.4f}" for k in SHOWN) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
