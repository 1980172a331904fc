"""Full evaluation at scale per index: the large world's trained model served through each preset.

After the scale section's largest run has trained and saved its model, each index preset serves
that same `model.pt` in an evaluation-only child (`ebr-train eval_only=true ckpt_path=...`) over
the whole serving corpus: every pin that exists at serving time (`corpus.size=1.0` with
`corpus.new_pins=0.99`, so the pins without engagement fill the budget the engaged ones leave).
From each child's `metrics.json`: the index build, the search of every test user (users per
second, and its ratio to flat's), the index's own ann_recall@100 on these embeddings, the job's
recall@100 and the whole evaluation's seconds, with the child's peak RSS.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# every pin created before serving time; new_pins < 1 is CorpusPolicy's bound
WHOLE_CORPUS = ("corpus.size=1.0", "corpus.new_pins=0.99")
PRESETS = ("flat", "ivfpq_large", "hnsw_large")
QUICK_PRESETS = ("flat", "ivfpq", "hnsw")


def bench_serving_scale(
    model: Path,
    overrides: Sequence[str],
    env: dict[str, str],
    root: Path,
    threads: int,
    presets: Sequence[str],
    child: Callable[[list[str], dict[str, str], Path], tuple[str, float, float]],
) -> dict[str, Any]:
    """Serve `model` through each index preset over the whole corpus; one row per preset.

    Args:
        model: the saved model.pt of the scale section's largest world.
        overrides: that world's `ebr-train` data overrides.
        env: the children's environment (its EBR_CACHE_DIR holds the world).
        root: scratch directory of the runs.
        threads: `num_threads=` of the children (torch and faiss).
        presets: conf/index options, flat first (the reference of the ratios).
        child: runs a command and returns (stdout, seconds, peak RSS MB) (scripts/bench/scale.py's
            `_child`).
    """
    if not presets or presets[0] != "flat":
        raise ValueError(f"the serving presets must start with flat (the reference), got {list(presets)}")
    rows: dict[str, dict[str, Any]] = {}
    for preset in presets:
        run_dir = root / f"serve_{preset}"
        command = [
            *(sys.executable, "-m", "ebr.train", *overrides, *WHOLE_CORPUS, f"index={preset}"),
            *("eval_only=true", f"ckpt_path={model}", "logger=none", f"num_threads={threads}"),
            *("trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}"),
        ]
        _, seconds, peak = child(command, env, root / f"serve_{preset}_logs")
        metrics = json.loads((run_dir / "metrics.json").read_text())
        rows[preset] = {
            "corpus": metrics["corpus/size"],
            "eval_users": metrics["eval/users"],
            "build_seconds": metrics["serving/index_build_seconds"],
            "search_seconds": metrics["serving/search_seconds"],
            "search_users_per_second": metrics["serving/search_users_per_second"],
            "ann_recall@100": metrics["ann_recall@100"],
            "recall@100": metrics["recall@100"],
            "eval_seconds": metrics["eval/seconds"],
            "eval_users_per_second": metrics["eval/users_per_second"],
            "job_seconds": seconds,
            "peak_rss_mb": peak,
        }
    flat = rows["flat"]
    for row in rows.values():
        row["search_vs_flat"] = row["search_users_per_second"] / flat["search_users_per_second"]
        row["eval_vs_flat"] = row["eval_users_per_second"] / flat["eval_users_per_second"]
    return {"overrides": [*overrides, *WHOLE_CORPUS], "indexes": rows}
