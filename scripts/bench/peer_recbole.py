"""A peer side by side: RecBole's general recommenders on ebr's exact refit split of MovieLens.

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python scripts/bench/peer_recbole.py

Steps (each a function below; the figures and the protocol are in experiments/benchmark.md,
"Peer: RecBole on the same split"):

1. RecBole's own virtual environment (`--venv`, default outputs/peer_recbole/venv, git-ignored;
   never ebr's `.venv`), made with `python -m venv` and pip from the pins in `REQUIREMENTS`. When
   it cannot be built the script prints one line, `peer_recbole: skipped: <reason>`, and exits 0.
2. ebr's split, from ebr's own code as `data=movielens` composes it (the MovieLens loader,
   `split=per_user_temporal`, `eval=refit`), exported as RecBole pre-split atomic files
   (`<name>.train.inter`, `.valid.inter`, `.test.inter`; tokens are ebr's dense user and pin ids):
   - `ebr_tune`: train = ebr's `Split.train` (tuning fits on train only); valid = the labels of
     ebr's validation task (`build_eval_task(split, train corpus, window="val")`, what ebr's
     tuning baselines score); test = the same rows again (RecBole's loader needs three files; the
     tuning run never reads its test);
   - `ebr_refit`: train = ebr's merged split's train (train+val, `fit_windows`); test = the labels
     of ebr's test task (warm pins of the train+val corpus, each user's train+val pins excluded:
     the users and relevant sets ebr scores); valid = the test rows again, never read (the refit
     trains a fixed epoch count with no validation).
   Because every label pin is warm, RecBole's item set is exactly ebr's corpus in both datasets,
   and RecBole's full-sort masks each user's training rows as ebr excludes them.
3. Per RecBole model: `peer_recbole_worker.py` in RecBole's environment tunes one key on
   `ebr_tune` (RecBole's early stopping on validation recall@50, `epochs` its cap), refits the
   chosen value on `ebr_refit` for the best epoch count and scores test with RecBole's full-sort
   evaluation.
4. ebr's tuned two-tower (`--ebr-overrides`, default `experiment=movielens_tuned`, or the tuned
   settings spelled out when that file does not exist) and EASE^R
   (`experiment=movielens_baselines model=ease`) through `ebr-train`, on the same data.
5. The metric cross-check: the rankings RecBole scored for `--check-model`, scored again by
   `ebr.evaluation.metrics.retrieval_metrics` against ebr's test task.

Results go to `--out` (results.json, the atomic files, each arm's run directory); the table is
printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().parent / "peer_recbole_worker.py"
DEFAULT_DATA = "../shared/datasets/ml-latest-small"
DEFAULT_OUT = REPO / "outputs" / "peer_recbole"
K = 50
TUNE, REFIT = "ebr_tune", "ebr_refit"
HEADER = "user_id:token\titem_id:token\ttimestamp:float\n"

# A working set on Python 3.11 (experiments/benchmark.md): RecBole 1.2.1 calls
# scipy.sparse.dok_matrix._update (LightGCN's adjacency; gone in scipy 1.12) and was written
# against numpy 1; torch >= 2.6 loads checkpoints with weights_only=True, which RecBole's own
# checkpoint reload fails on, so the worker never reloads one (saved=False, load_best_model=False).
TORCH = "torch==2.13.0+cpu"
TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
RECBOLE = "recbole==1.2.1"
# RecBole's requirements less ray (imported only by recbole.quick_start's hyper-tuning) and plotly
# (only its plotting), which the worker does not use; installed with their own dependencies
REQUIREMENTS = (
    "numpy==1.26.4",
    "scipy==1.11.4",
    "pandas==2.2.3",
    "scikit-learn==1.5.2",
    "tqdm",
    "colorlog==4.7.2",
    "colorama==0.4.4",
    "pyyaml",
    "tensorboard",
    "thop",
    "tabulate",
    "texttable",
    "psutil",
)
# the import check of a finished environment (the scipy call LightGCN needs included)
IMPORT_CHECK = (
    "import recbole, torch, numpy, scipy.sparse as sp; from recbole.config import Config; "
    "from recbole.data import create_dataset; from recbole.utils import get_model, get_trainer; "
    "m = sp.dok_matrix((2, 2)); m._update({(0, 1): 1.0}); print(recbole.__version__)"
)
# (model, tuned key, grid): each key's grid brackets RecBole's documented default
MODELS = {
    "BPR": ("learning_rate", "0.0005,0.001,0.005"),
    "LightGCN": ("n_layers", "1,2,3"),
    "MultiVAE": ("learning_rate", "0.0005,0.001,0.005"),
}
# the tuned two-tower settings of experiments/movielens.md, used when conf/experiment/movielens_tuned.yaml
# does not exist
TUNED_OVERRIDES = (
    "experiment=movielens model/crossing=mlp train.sparse_lr=0.0597 train.dense_lr=0.00259 "
    "trainer.max_epochs=20 model.embedding_dim=32 model.negatives.num_negatives=0 train.logq=exact "
    "serving.score_terms.popularity_prior.weight=0.05"
)
EASE_OVERRIDES = "experiment=movielens_baselines model=ease"

Runner = Callable[..., subprocess.CompletedProcess]


# ---------------------------------------------------------------- RecBole's environment


def ensure_venv(venv: Path, runner: Runner = subprocess.run) -> tuple[Path | None, str]:
    """RecBole's virtual environment, built when missing: (its python, "") or (None, why not).

    Args:
        venv: the environment's folder (reused when its marker file names the same pins).
        runner: `subprocess.run` (tests pass a fake).
    """
    python = venv / "bin" / "python"
    marker = venv / ".peer_recbole_pins"
    pins = "\n".join((TORCH, RECBOLE, *REQUIREMENTS))
    if marker.is_file() and marker.read_text() == pins and python.is_file():
        return python, ""
    steps = [
        ([sys.executable, "-m", "venv", "--clear", str(venv)], "python -m venv"),
        (
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--retries",
                "2",
                "--extra-index-url",
                TORCH_INDEX,
                TORCH,
                *REQUIREMENTS,
            ],
            "pip install of torch and RecBole's requirements",
        ),
        ([str(python), "-m", "pip", "install", "--quiet", "--no-deps", RECBOLE], f"pip install {RECBOLE}"),
        ([str(python), "-c", IMPORT_CHECK], "import check of recbole"),
    ]
    for command, what in steps:
        try:
            done = runner(command, capture_output=True, text=True)
        except OSError as error:
            return None, f"{what} could not start: {error}"
        if done.returncode != 0:
            lines = [x for x in (done.stderr or done.stdout or "").splitlines() if x.strip()]
            return None, f"{what} failed (exit {done.returncode}): {lines[-1] if lines else 'no output'}"
    marker.write_text(pins)
    return python, ""


# ---------------------------------------------------------------- ebr's split as atomic files


@dataclass(frozen=True)
class ExportedSplit:
    """ebr's refit split of one data set and the evaluation tasks its files were written from.

    Args:
        split: the unmerged cut (tuning fits on its train, scores its validation).
        merged: the refit split (train+val as `train`; what the final fit trains on).
        val_task: ebr's validation task of `split` (the tuning labels).
        test_task: ebr's test task of `merged` (the test labels).
        root: the folder holding one folder per RecBole dataset.
    """

    split: Any
    merged: Any
    val_task: Any
    test_task: Any
    root: Path


def compose_movielens(data_path: Path) -> Any:
    """ebr's job config of `data=movielens data.path=<data_path>` (split and eval as it selects them).

    Args:
        data_path: the MovieLens folder.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from ebr.config import register_schemas

    register_schemas()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
            return compose("train", overrides=["data=movielens", f"data.path={data_path}"])
    finally:
        GlobalHydra.instance().clear()


def ebr_split(data_path: Path) -> tuple[Any, Any, Any, Any]:
    """(split, merged split, validation task, test task) exactly as an `ebr-train` job builds them.

    Args:
        data_path: the MovieLens folder.
    """
    import hydra

    from ebr.evaluation.task import build_eval_task
    from ebr.retrieval.refit import fit_windows
    from ebr.serving.corpus import training_window_corpus

    cfg = compose_movielens(data_path)
    if not (cfg.eval.refit and cfg.eval.window == "test" and cfg.eval.exclude_train):
        raise ValueError("data=movielens no longer selects eval.refit=true, window=test, exclude_train")
    data = hydra.utils.instantiate(cfg.data)
    make_split = hydra.utils.instantiate(cfg.split)
    split = make_split(data)
    merged = fit_windows(make_split, data, split, cfg.eval.window, cfg.eval.refit).split
    # what ebr's tuning baselines score (ebr.retrieval.tuning) and what a job's test task holds
    # (ebr.pipeline.Scoring: the train_window corpus of the fitted split, exclusions on)
    val_task = build_eval_task(split, training_window_corpus(split), window="val", exclude_train=True)
    test_task = build_eval_task(merged, training_window_corpus(merged), window="test", exclude_train=True)
    return split, merged, val_task, test_task


def task_rows(task: Any, window: pd.DataFrame) -> pd.DataFrame:
    """A task's relevant (user, pin) pairs as rows, each with its first timestamp in the window.

    Args:
        task: an ebr EvalTask (per pin, no labels).
        window: the window's engagement rows (user, pin, timestamp).
    """
    pairs = pd.DataFrame(
        {"user": task.user_ids[task.relevant.row_of_value()], "pin": task.relevant.values.astype(np.int64)}
    )
    first = window.groupby(["user", "pin"], as_index=False)["timestamp"].min()
    rows = pairs.merge(first, on=["user", "pin"], how="left", validate="one_to_one")
    if rows["timestamp"].isna().any():
        raise ValueError("a relevant pair of the task has no row in its window")
    return rows.sort_values(["user", "pin"], kind="stable").reset_index(drop=True)


def write_inter(path: Path, rows: pd.DataFrame) -> None:
    """One RecBole atomic `.inter` file: a typed header, then user, pin, timestamp per row.

    Args:
        path: the file.
        rows: user, pin and timestamp columns.
    """
    from ebr.runs.files import write_atomic

    body = rows[["user", "pin", "timestamp"]].astype(np.int64)

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(HEADER)
            body.to_csv(f, sep="\t", header=False, index=False, lineterminator="\n")

    write_atomic(path, write)


def export_split(data_path: Path, root: Path) -> ExportedSplit:
    """Write ebr's refit split of a MovieLens folder as the `ebr_tune` and `ebr_refit` datasets.

    Args:
        data_path: the MovieLens folder (never copied: only the split's rows are written).
        root: the folder to write `ebr_tune/` and `ebr_refit/` into.
    """
    split, merged, val_task, test_task = ebr_split(data_path)
    columns = ["user", "pin", "timestamp"]
    val_rows = task_rows(val_task, split.val)
    test_rows = task_rows(test_task, merged.test)
    files = {
        TUNE: (split.train[columns], val_rows, val_rows),
        REFIT: (merged.train[columns], test_rows, test_rows),
    }
    for name, (train, valid, test) in files.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for part, rows in zip(("train", "valid", "test"), (train, valid, test), strict=True):
            write_inter(folder / f"{name}.{part}.inter", rows)
    return ExportedSplit(split, merged, val_task, test_task, root)


# ---------------------------------------------------------------- the arms


def run_recbole(
    python: Path, model: str, exported: ExportedSplit, args: argparse.Namespace
) -> dict[str, Any]:
    """One RecBole model through the worker in RecBole's environment (its JSON result).

    Args:
        python: RecBole's environment's python.
        model: the model name (a key of MODELS).
        exported: the exported datasets.
        args: the command line (epochs, seed, threads, out).
    """
    key, grid = MODELS[model]
    command = [
        str(python), str(WORKER), "--data-root", str(exported.root), "--work", str(args.out / "recbole"),
        "--model", model, "--key", key, "--grid", grid, "--epochs", str(args.epochs),
        "--seed", str(args.seed), "--threads", str(args.threads),
        "--eval-batch-size", str(args.eval_batch_size),
    ]  # fmt: skip
    print(f"RecBole {model}: tuning {key} over {grid}", flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=_threads_env(args.threads))
    if done.returncode != 0:
        raise RuntimeError(f"RecBole worker for {model} failed (exit {done.returncode}); its stderr is above")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_seconds"] = time.perf_counter() - started
    return result


def run_ebr(name: str, overrides: str, data_path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One `ebr-train` job in this repository's environment on the same data (its metrics.json).

    Args:
        name: the arm's folder name under `--out`/ebr.
        overrides: the job's Hydra overrides (space-separated).
        data_path: the MovieLens folder.
        args: the command line (seed, threads, out).
    """
    run_dir = args.out / "ebr" / name
    command = [
        str(Path(sys.executable).with_name("ebr-train")), *shlex.split(overrides), f"data.path={data_path}",
        f"seed={args.seed_ebr}", f"num_threads={args.threads}", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    print(f"ebr {name}: {' '.join(command[1:-1])}", flush=True)
    env = {**_threads_env(args.threads), "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"ebr-train {name} failed (exit {done.returncode}); its stderr is above")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"metrics": metrics, "overrides": overrides, "wall_seconds": time.perf_counter() - started}


def ebr_overrides(requested: str) -> str:
    """The two-tower arm's overrides: as given, unless they name an experiment file that is missing.

    Args:
        requested: `--ebr-overrides`.
    """
    for token in shlex.split(requested):
        if token.startswith("experiment="):
            name = token.split("=", 1)[1]
            if not (REPO / "conf" / "experiment" / f"{name}.yaml").is_file():
                rest = [t for t in shlex.split(requested) if t != token]
                print(f"conf/experiment/{name}.yaml does not exist: using the tuned settings spelled out")
                return " ".join([TUNED_OVERRIDES, *rest])
    return requested


def cross_check(recbole_result: dict[str, Any], exported: ExportedSplit) -> dict[str, float]:
    """RecBole's own test rankings of one model scored by ebr's metric code on ebr's test task.

    Args:
        recbole_result: the worker's result (`test.rankings`: users and their top-K pins).
        exported: the split (its test task).
    """
    from ebr.evaluation.metrics import retrieval_metrics

    saved = np.load(recbole_result["test"]["rankings"])
    task = exported.test_task
    if not np.array_equal(np.sort(saved["users"]), task.user_ids):
        raise ValueError("RecBole's test users are not ebr's test task users")
    order = np.argsort(saved["users"], kind="stable")
    ebr = retrieval_metrics(saved["top"][order], task.relevant, [K])
    return {"recall": ebr[f"recall@{K}"], "ndcg": ebr[f"ndcg@{K}"]}


# ---------------------------------------------------------------- report


def table_rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """(arm, chosen on validation, recall@50, NDCG@50, s/epoch, epochs, wall s) per arm, formatted.

    Args:
        results: results.json's content.
    """
    rows = []
    for model, result in results["recbole"].items():
        chosen, test = result["tuning"]["chosen"], result["test"]
        # early stopping never fired within the cap: the validation curve was still rising
        capped = " (cap reached)" if chosen["epochs_run"] >= results.get("epochs_cap", np.inf) else ""
        rows.append(
            (f"RecBole {model}", f"{result['tuning']['key']}={chosen['value']}", f"{test['recall']:.4f}",
             f"{test['ndcg']:.4f}", f"{test['seconds_per_epoch']:.2f}", f"{test['epochs']}{capped}",
             f"{result['wall_seconds']:.0f}")
        )  # fmt: skip
    for name, arm in results["ebr"].items():
        m = arm["metrics"]
        epochs = m.get("train/epochs")
        per_epoch = f"{m['train/seconds'] / epochs:.2f}" if epochs else "-"
        chosen = ", ".join(f"{k[5:]}={v:g}" for k, v in m.items() if k.startswith("tune/") and "[" not in k)
        recall, ndcg = m[f"recall@{K}"], m[f"ndcg@{K}"]
        rows.append(
            (f"ebr {name}", chosen or "(config)", f"{recall:.4f}", f"{ndcg:.4f}", per_epoch,
             str(int(epochs)) if epochs else "closed form", f"{arm['wall_seconds']:.0f}")
        )  # fmt: skip
    return rows


def render(results: dict[str, Any]) -> str:
    """The side-by-side table and the metric cross-check, as markdown.

    Args:
        results: results.json's content.
    """
    head = (
        "arm",
        "chosen on validation",
        f"recall@{K}",
        f"NDCG@{K}",
        "train s/epoch",
        "epochs (refit)",
        "arm wall s",
    )
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(results)]
    check = results.get("cross_check")
    if check:
        recbole = results["recbole"][check["model"]]["test"]
        lines += [
            "",
            f"Cross-check, RecBole {check['model']}'s test rankings:"
            f" RecBole recall@{K} {recbole['recall']:.6f},"
            f" NDCG@{K} {recbole['ndcg']:.6f}; ebr's metric code recall@{K} {check['recall']:.6f},"
            f" NDCG@{K} {check['ndcg']:.6f}",
        ]
    return "\n".join(lines)


def _threads_env(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring).

    Args:
        argv: arguments (default sys.argv[1:]).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("EBR_MOVIELENS_PATH", DEFAULT_DATA)))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--venv", type=Path, default=None, help="RecBole's environment (default <out>/venv)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {list(MODELS)}")
    parser.add_argument("--check-model", default="BPR", help="the model whose rankings ebr's metrics rescore")
    parser.add_argument("--epochs", type=int, default=300, help="RecBole's epoch cap (its default, 300)")
    parser.add_argument("--seed", type=int, default=2020, help="RecBole's seed (its default)")
    parser.add_argument(
        "--eval-batch-size",
        type=int,
        default=4096,
        help="RecBole's eval_batch_size (its default; speed only)",
    )
    parser.add_argument("--seed-ebr", type=int, default=0, help="the ebr arms' seed")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    parser.add_argument("--ebr-overrides", default="experiment=movielens_tuned", help="the two-tower arm")
    parser.add_argument("--skip-ebr", action="store_true", help="RecBole's arms only")
    parser.add_argument("--resume", action="store_true", help="keep the arms already in <out>/results.json")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, runner: Runner = subprocess.run) -> int:
    """Build RecBole's environment, export the split, run every arm, print and save the table.

    Args:
        argv: arguments (default sys.argv[1:]).
        runner: how the environment's build steps run (tests pass a fake).
    """
    args = parse_args(argv)
    args.out = args.out.resolve()
    data_path = args.data if args.data.is_absolute() else (REPO / args.data).resolve()
    python, reason = ensure_venv((args.venv or args.out / "venv").resolve(), runner)
    if python is None:
        print(f"peer_recbole: skipped: RecBole cannot be installed: {reason}")
        return 0
    exported = export_split(data_path, args.out / "atomic")
    print(
        f"exported ebr's split of {data_path}: tune {len(exported.split.train)} train / "
        f"{len(exported.val_task.relevant.values)} valid labels; refit {len(exported.merged.train)} train / "
        f"{len(exported.test_task.relevant.values)} test labels of {len(exported.test_task.user_ids)} users",
        flush=True,
    )
    saved = args.out / "results.json"
    results: dict[str, Any] = {"data": str(args.data), "epochs_cap": args.epochs, "recbole": {}, "ebr": {}}
    if args.resume and saved.is_file():
        results = json.loads(saved.read_text())
    arms: list[tuple[str, str, Callable[[], dict[str, Any]]]] = [
        ("recbole", m, lambda m=m: run_recbole(python, m, exported, args))
        for m in (x.strip() for x in args.models.split(","))
        if m
    ]
    if not args.skip_ebr:
        two_tower = ebr_overrides(args.ebr_overrides)
        arms.append(("ebr", "two-tower (tuned)", lambda: run_ebr("two_tower", two_tower, data_path, args)))
        arms.append(("ebr", "EASE^R", lambda: run_ebr("ease", EASE_OVERRIDES, data_path, args)))
    for side, name, run in arms:
        if name not in results[side]:
            results[side][name] = run()
            saved.write_text(json.dumps(results, indent=1, default=str))  # a later arm's failure keeps it
    if args.check_model in results["recbole"]:
        check = cross_check(results["recbole"][args.check_model], exported)
        results["cross_check"] = {"model": args.check_model, **check}
    saved.write_text(json.dumps(results, indent=1, default=str))
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
