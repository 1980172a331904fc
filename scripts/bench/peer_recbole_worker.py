"""RecBole's side of scripts/bench/peer_recbole.py: runs inside RecBole's own virtual environment.

It imports RecBole, torch and numpy only (never ebr). For one general recommender it:

1. tunes one hyperparameter on the `<tune>` dataset (ebr's unmerged cut: `.train.inter` = ebr's
   `Split.train`, `.valid.inter` = ebr's validation labels): every grid value is trained with
   RecBole's own early stopping on validation recall@50 (`stopping_step`, `epochs` as the cap),
   and the value with the best validation recall@50 wins (ties: the earlier value, as ebr's
   tuning baselines choose);
2. refits the chosen value on the `<refit>` dataset (`.train.inter` = ebr's train+val) for the
   number of epochs at which that value's validation score peaked (RecBole keeps the best epoch's
   weights; with no validation window in the refit, the epoch count is what carries over), with no
   validation during training;
3. scores the refit model on `<refit>`'s `.test.inter` with RecBole's own full-sort evaluation
   (`Trainer.evaluate`), and writes the top-K it ranked per user (ebr's ids, from the atomic
   files' tokens) so the caller can score the same rankings with ebr's metric code.

Prints one JSON object on its last stdout line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, get_trainer, init_seed

K = 50


def base_config(data_root: Path, work: Path, seed: int, epochs: int, eval_batch_size: int) -> dict[str, Any]:
    """The settings every run shares; everything not named here is RecBole's documented default.

    Args:
        data_root: folder holding one subfolder per dataset (RecBole's `data_path`).
        work: where RecBole may write its checkpoints.
        seed: RecBole's `seed`.
        epochs: RecBole's `epochs` (the early-stopping cap while tuning).
        eval_batch_size: RecBole's `eval_batch_size`: a full-sort batch holds this // items users,
            so its default 4096 scores one user per batch on 5,300 items (speed only: each user's
            scores do not depend on the batch).
    """
    return {
        "data_path": str(data_root),
        "checkpoint_dir": str(work / "saved"),
        "benchmark_filename": ["train", "valid", "test"],
        "load_col": {"inter": ["user_id", "item_id"]},
        "eval_args": {"group_by": "user", "order": "RO", "mode": "full"},
        "metrics": ["Recall", "NDCG"],
        "topk": [K],
        "valid_metric": f"Recall@{K}",
        "metric_decimal_place": 8,
        "epochs": epochs,
        "eval_batch_size": eval_batch_size,
        "seed": seed,
        "use_gpu": False,
        "show_progress": False,
        "state": "WARNING",
        "log_wandb": False,
    }


def _parse_value(text: str) -> Any:
    """A grid value as written on the command line: a number when it reads as one."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _build(model: str, dataset: str, config: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    """(config, train loader, valid loader, test loader, trainer) of one RecBole run."""
    cfg = Config(model=model, dataset=dataset, config_dict=config)
    init_seed(cfg["seed"], cfg["reproducibility"])
    data = create_dataset(cfg)
    train, valid, test = data_preparation(cfg, data)
    init_seed(cfg["seed"], cfg["reproducibility"])
    net = get_model(cfg["model"])(cfg, train._dataset).to(cfg["device"])
    trainer = get_trainer(cfg["MODEL_TYPE"], cfg["model"])(cfg, net)
    return cfg, (train, valid, test), trainer, data


def tune(model: str, dataset: str, config: dict[str, Any], key: str, grid: list[Any]) -> dict[str, Any]:
    """Train every grid value with early stopping on validation; pick the best (ties: earlier).

    Args:
        model: RecBole model name.
        dataset: the tuning dataset's name.
        config: `base_config`'s settings.
        key: the tuned hyperparameter.
        grid: its values, tried in order.
    """
    trials = []
    for value in grid:
        _, (train, valid, _), trainer, _ = _build(model, dataset, {**config, key: value})
        curve: list[float] = []

        def record(_epoch: int, score: float, curve: list[float] = curve) -> None:
            curve.append(float(score))

        started = time.perf_counter()
        trainer.fit(train, valid, verbose=False, saved=False, callback_fn=record)
        seconds = time.perf_counter() - started
        best = max(curve)
        # RecBole's early_stopping moves its best on `>=`: the last epoch reaching the maximum
        best_epoch = max(i for i, s in enumerate(curve) if s == best)
        trials.append(
            {"value": value, "valid_recall": best, "best_epoch": best_epoch, "epochs_run": len(curve),
             "seconds": seconds}
        )  # fmt: skip
        epochs = f"epoch {best_epoch + 1} of {len(curve)}"
        print(f"  {model} {key}={value}: valid recall@{K} {best:.4f} at {epochs}", file=sys.stderr)
    chosen = trials[0]
    for trial in trials[1:]:
        if trial["valid_recall"] > chosen["valid_recall"]:
            chosen = trial
    return {"key": key, "trials": trials, "chosen": chosen}


def refit_and_test(model: str, dataset: str, config: dict[str, Any], out: Path) -> dict[str, Any]:
    """Train on train+val for the chosen epochs, score test with RecBole, save its top-K rankings.

    Args:
        model: RecBole model name.
        dataset: the refit dataset's name.
        config: the settings with the chosen value and `epochs` = the tuned epoch count.
        out: the .npz written with `users` (ebr user ids) and `top` ((users, K) ebr pin ids).
    """
    _, (train, _, test), trainer, data = _build(model, dataset, config)
    started = time.perf_counter()
    trainer.fit(train, None, verbose=False, saved=False)
    seconds = time.perf_counter() - started
    users, tops = [], []
    full_sort = trainer._full_sort_batch_eval

    def recording(batched_data: Any) -> Any:
        interaction, scores, positive_u, positive_i = full_sort(batched_data)
        # the same call on the same tensor as RecBole's Collector: the rankings its metrics read
        tops.append(torch.topk(scores, K, dim=-1)[1].cpu().numpy())
        users.append(interaction[data.uid_field].cpu().numpy())
        return interaction, scores, positive_u, positive_i

    trainer._full_sort_batch_eval = recording
    result = trainer.evaluate(test, load_best_model=False)
    user_tokens = data.id2token(data.uid_field, np.concatenate(users))
    item_tokens = data.id2token(data.iid_field, np.concatenate(tops))
    np.savez(out, users=user_tokens.astype(np.int64), top=item_tokens.astype(np.int64))
    epochs = int(config["epochs"])
    return {
        "recall": float(result[f"recall@{K}"]),
        "ndcg": float(result[f"ndcg@{K}"]),
        "train_seconds": seconds,
        "epochs": epochs,
        "seconds_per_epoch": seconds / max(epochs, 1),
        "n_items": int(data.item_num - 1),  # less RecBole's padding id 0
        "n_test_users": len(user_tokens),
        "rankings": str(out),
    }


def main(argv: list[str] | None = None) -> None:
    """Command line: see the module docstring.

    Args:
        argv: arguments (default: sys.argv[1:]).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--grid", required=True, help="comma-separated values of --key")
    parser.add_argument("--tune-dataset", default="ebr_tune")
    parser.add_argument("--refit-dataset", default="ebr_refit")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-batch-size", type=int, default=4096)
    args = parser.parse_args(argv)
    # RecBole's Config reads `--key=value` settings from sys.argv: it must see none of ours
    sys.argv = sys.argv[:1]
    # RecBole 1.2.1 on pandas 2.2 / torch 2.13: a chained fillna and torch.cuda.amp.GradScaler are
    # deprecated there; both still work, and they would repeat once per run
    warnings.filterwarnings("ignore", category=FutureWarning, module="recbole")
    warnings.filterwarnings("ignore", message=".*torch.sparse.SparseTensor.*is deprecated")
    torch.set_num_threads(args.threads)
    logging.getLogger("tensorboard").setLevel(logging.ERROR)
    args.work.mkdir(parents=True, exist_ok=True)
    os.chdir(args.work)  # RecBole writes log/ and log_tensorboard/ into the working directory
    config = base_config(args.data_root, args.work, args.seed, args.epochs, args.eval_batch_size)
    grid = [_parse_value(v) for v in args.grid.split(",")]
    tuned = tune(args.model, args.tune_dataset, config, args.key, grid)
    chosen = tuned["chosen"]
    refit_config = {**config, args.key: chosen["value"], "epochs": chosen["best_epoch"] + 1}
    rankings = args.work / f"{args.model}_top{K}.npz"
    test = refit_and_test(args.model, args.refit_dataset, refit_config, rankings)
    import recbole

    versions = {"recbole": recbole.__version__, "torch": torch.__version__, "numpy": np.__version__}
    print(json.dumps({"model": args.model, "tuning": tuned, "test": test, "versions": versions}))


if __name__ == "__main__":
    main()
