"""Filtered HR@100 with each test engagement's logged source interest as the condition, post hoc.

ebr's `filtered_hr@100` takes the condition from the pins' tags: a (user, served interest c) pair
counts a test engagement on any pin tagged c. Here the condition is the interest the logging policy
surfaced the engaged pin through (the events' `interest` column): over (user, source interest s)
pairs of the test window whose s is one of the user's served interests, `query` is a hit when the
query for s holds one of those pins in its own top 100 (retrieval restricted to s's pins when the
job's filter is `pre`, as in the conditional_source experiment), `merged` when the user's merged
top 100 does. Each job directory is re-served from its own `model.pt` and config.

Usage:
    python scripts/conditional_session_hr.py multirun/c28/source/w*/[0-3]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
import numpy as np
import yaml
from omegaconf import OmegaConf

from ebr.config import register_schemas
from ebr.data.schema import CLICK, REPIN
from ebr.evaluation.task import build_eval_task
from ebr.serving.conditional import InterestRetrieval
from ebr.serving.corpus import training_window_corpus
from ebr.serving.interests import InterestServing


def session_hit_rates(job: Path) -> dict[str, float]:
    """(pairs, query hit rate, merged hit rate) of one finished job, re-served from its model."""
    cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
    data = hydra.utils.instantiate(cfg.data)
    split = hydra.utils.instantiate(cfg.split)(data)
    corpus = training_window_corpus(split)
    task = build_eval_task(split, corpus)
    settings = InterestServing.of(OmegaConf.to_container(cfg.serving, resolve=True))
    index = hydra.utils.instantiate(cfg.index)
    retrieval = InterestRetrieval.from_artifact(
        job / "model.pt", data, split.train, corpus, index, None, settings
    )
    merged = retrieval.retrieve(task.user_ids, 100, task.exclude)
    lists, conditions, lengths = retrieval.queries
    starts = np.cumsum(lengths) - lengths
    query_of = {
        (row, int(conditions[q])): q
        for row, (start, n) in enumerate(zip(starts.tolist(), lengths.tolist()))
        for q in range(start, start + n)
    }
    row_of_user = {int(user): row for row, user in enumerate(task.user_ids)}
    test = split.test[split.test["event"].isin([CLICK, REPIN])]
    targets: dict[tuple[int, int], set[int]] = {}
    for user, pin, source in zip(test["user"].tolist(), test["pin"].tolist(), test["interest"].tolist()):
        row = row_of_user.get(user)
        if row is not None and (row, source) in query_of:
            targets.setdefault((row, source), set()).add(pin)
    query_hits = [bool(set(lists[query_of[key]].tolist()) & pins) for key, pins in targets.items()]
    merged_hits = [bool(set(merged[key[0]].tolist()) & pins) for key, pins in targets.items()]
    return {
        "pairs": float(len(targets)),
        "session_hr@100/query": float(np.mean(query_hits)),
        "session_hr@100/merged": float(np.mean(merged_hits)),
    }


def main() -> None:
    register_schemas()
    for job in map(Path, sys.argv[1:]):
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        print(json.dumps({"job": str(job), "overrides": overrides, **session_hit_rates(job)}), flush=True)


if __name__ == "__main__":
    main()
