"""Full evaluation at scale per index: the large world's trained model served through each preset.

After the scale section's largest run has trained and saved its model, each index preset serves
that same `model.pt` in an evaluation-only child (`ebr-train eval_only=true ckpt_path=...`) over
the whole serving corpus: every pin that exists at serving time (`corpus.size=1.0` with
`corpus.new_pins=0.99`, so the pins without engagement fill the budget the engaged ones leave).
From each child's `metrics.json`: the index build, the search of every test user (users per
second, and its ratio to flat's), the index's own ann_recall@100 on these embeddings, the job's
recall@100 and the whole evaluation's seconds, with the child's peak RSS; for an approximate
index also its search timed against flat's side by side in the same job on the same queries
(`serving/side_by_side_*`), a ratio that does not take flat's swings between runs for the
index's. A preset may carry overrides after it, space-separated ("hnsw_large
index.search_params.efSearch=400"); the row is named by the whole string. `index=auto`'s row adds
the choice it made on validation users (its run.json's operating points).

`bench_serving_section` is `scripts/benchmark.py --sections serving_scale`: one model trained on
the learnable large world (`data=synthetic_xl`, or a given model.pt) served through each preset.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# the training run's figures the section keeps
TRAINING_KEYS = (
    "recall@100",
    "train/examples",
    "train/seconds",
    "eval/users",
    "eval/corpus_size",
    "corpus/size",
)
# every pin created before serving time; new_pins < 1 is CorpusPolicy's bound
WHOLE_CORPUS = ("corpus.size=1.0", "corpus.new_pins=0.99")
PRESETS = ("flat", "ivfpq_large", "hnsw_large")
QUICK_PRESETS = ("flat", "ivfpq", "hnsw")
# the serving_scale section: the fixed presets before and after the fix, and the auto index
SECTION_PRESETS = ("flat", "ivfpq_large", "hnsw_large", "auto")
QUICK_SECTION_PRESETS = ("flat", "ivfpq", "hnsw", "auto index.min_corpus=0 index.sample_users=300")


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
    if not presets or presets[0].split()[0] != "flat":
        raise ValueError(f"the serving presets must start with flat (the reference), got {list(presets)}")
    rows: dict[str, dict[str, Any]] = {}
    for number, spec in enumerate(presets):
        preset, *index_overrides = spec.split()
        run_dir = root / f"serve{number}_{preset}"
        command = [
            *(
                sys.executable,
                "-m",
                "ebr.train",
                *overrides,
                *WHOLE_CORPUS,
                f"index={preset}",
                *index_overrides,
            ),
            *("eval_only=true", f"ckpt_path={model}", "logger=none", f"num_threads={threads}"),
            *("trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}"),
        ]
        _, seconds, peak = child(command, env, root / f"serve{number}_{preset}_logs")
        metrics = json.loads((run_dir / "metrics.json").read_text())
        rows[spec] = {
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
            # an approximate index's search timed against flat's in its own job (ann_recall's)
            **{
                key.removeprefix("serving/"): value
                for key, value in metrics.items()
                if key.startswith("serving/side_by_side_")
            },
            **_choice(run_dir),
        }
    flat = rows[presets[0]]
    for row in rows.values():
        row["search_vs_flat"] = row["search_users_per_second"] / flat["search_users_per_second"]
        row["eval_vs_flat"] = row["eval_users_per_second"] / flat["eval_users_per_second"]
    return {"overrides": [*overrides, *WHOLE_CORPUS], "indexes": rows}


def _choice(run_dir: Path) -> dict[str, Any]:
    """index=auto's choice from the run record: the chosen setting and every operating point."""
    record = run_dir / "run.json"
    if not record.is_file():
        return {}
    choice = (json.loads(record.read_text()).get("info") or {}).get("index_choice")
    if not choice:
        return {}
    chosen = choice["operating_points"][choice["chosen"]]
    return {"chosen": f"{chosen['sized_factory']} {chosen['search_params']}", "index_choice": choice}


def bench_serving_section(
    root: Path,
    threads: int,
    data: Sequence[str],
    presets: Sequence[str],
    child: Callable[[list[str], dict[str, str], Path], tuple[str, float, float]],
    model: Path | None = None,
) -> dict[str, Any]:
    """Train one epoch of the default model on `data` (unless `model` is given), then serve it
    through each preset over the whole corpus (bench_serving_scale).

    Args:
        root: scratch directory of the runs.
        threads: `num_threads=` of every child (torch and faiss).
        data: the world's `ebr-train` overrides, e.g. ["data=synthetic_xl"].
        presets: conf/index options (with overrides), flat first.
        child: runs a command: (stdout, seconds, peak RSS MB).
        model: an already trained model.pt of that world (skips the training).
    """
    path = os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().parents[3]), os.environ.get("PYTHONPATH")])
    )
    env = dict(os.environ, PYTHONPATH=path, WANDB_MODE="offline")
    result: dict[str, Any] = {"data": list(data)}
    if model is None:
        run_dir = root / "serving_train"
        command = [
            *(sys.executable, "-m", "ebr.train", *data, "trainer.max_epochs=1", "logger=none"),
            *(f"num_threads={threads}", "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}"),
        ]
        _, seconds, peak = child(command, env, root / "serving_train_logs")
        metrics = json.loads((run_dir / "metrics.json").read_text())
        result["training"] = {
            "seconds": seconds,
            "peak_rss_mb": peak,
            **{key: metrics[key] for key in TRAINING_KEYS if key in metrics},
        }
        model = run_dir / "model.pt"
    result["model"] = str(model)
    result.update(bench_serving_scale(model, data, env, root, threads, presets, child))
    return result


def format_serving_section(result: dict[str, Any]) -> list[str]:
    """The section's text: the training run, then one line per index.

    Args:
        result: bench_serving_section's result.
    """
    lines = ["", f"serving at scale: {' '.join(result['overrides'])}"]
    training = result.get("training")
    if training:
        lines.append(
            "trained one epoch: " + ", ".join(f"{key} {value:,.4g}" for key, value in training.items())
        )
    columns = ("corpus", "build s", "users/s", "x flat", "ann_r@100", "recall@100")
    lines.append(f"{'index':58s} " + " ".join(f"{c:>10s}" for c in columns))
    for name, row in result["indexes"].items():
        lines.append(
            f"{name:58s} {row['corpus']:10,.0f} {row['build_seconds']:10.1f}"
            f" {row['search_users_per_second']:10,.0f} {row['search_vs_flat']:10.2f}"
            f" {row['ann_recall@100']:10.4f} {row['recall@100']:10.4f}"
        )
        if "side_by_side_vs_flat" in row:
            lines.append(
                f"    side by side in its job: {row['side_by_side_queries_per_second']:,.0f} against flat's"
                f" {row['side_by_side_flat_queries_per_second']:,.0f} queries/s,"
                f" {row['side_by_side_vs_flat']:.2f}x (lowest chunk {row['side_by_side_vs_flat_min']:.2f}x)"
            )
        if "chosen" in row:
            lines.append(
                f"    chose {row['chosen']} on {row['index_choice']['sample_queries']} validation users"
            )
    return lines
