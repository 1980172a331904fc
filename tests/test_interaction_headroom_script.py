"""scripts/interaction_headroom.py: its true-score ranking against a per-user brute force, and a run."""

import os
import subprocess
import sys

import numpy as np
from script_loader import SCRIPTS, load_script

from ebr.data.splits import global_temporal_split
from ebr.data.world import WorldConfig, generate_world
from ebr.evaluation.task import build_eval_task
from ebr.serving.corpus import training_window_corpus

SCRIPT = SCRIPTS / "interaction_headroom.py"


def test_true_ranking_matches_brute_force_per_user() -> None:
    data = generate_world(WorldConfig(n_users=400, n_pins=200, n_interests=6, n_days=12))
    split = global_temporal_split(data, test_days=3, val_days=1, train_days=8)
    task = build_eval_task(split, training_window_corpus(split))
    ranked = load_script("interaction_headroom.py").true_ranking(data.truth, task, depth=20)
    for row in range(0, len(task.user_ids), 37):
        user = task.user_ids[row]
        scores = data.truth.true_score(np.full(len(task.corpus), user), task.corpus, task.timestamp)
        banned = set(task.exclude.values[task.exclude.offsets[row] : task.exclude.offsets[row + 1]])
        expected = [p for p in task.corpus[np.argsort(-scores, kind="stable")] if p not in banned][:20]
        assert ranked[row].tolist() == expected


def test_script_prints_both_rankings() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    overrides = ["data.config.n_users=800", "data.config.n_pins=600", "data.config.n_days=32"]
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *overrides], capture_output=True, text=True, env=env, check=True
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0] for line in lines[1:]] == [
        "| true score",
        "| interaction removed (users and pins)",
    ]
