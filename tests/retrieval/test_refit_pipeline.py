"""`run_job` under `eval.refit` on a small MovieLens folder: which windows are fitted, tuned and excluded."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from ebr.pipeline import run_job
from ebr.retrieval.popularity import Popularity
from ebr.runs import NoLoggers

REPO = Path(__file__).resolve().parents[2]
N_USERS, N_MOVIES = 25, 40


def write_ratings(folder: Path, seed: int = 0) -> pd.DataFrame:
    """A latest-format folder of random ratings; returns the engagements (rating >= 4), 0-based ids."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(N_USERS):
        movies = rng.choice(N_MOVIES, size=rng.integers(6, 16), replace=False)
        # distinct timestamps per user, so each user's time order is unambiguous
        # from 2001 on: the loader refuses timestamps before MovieLens existed (1995)
        times = 1_000_000_000 + 1_000 * user + rng.choice(900, size=len(movies), replace=False)
        ratings = rng.choice([2.0, 4.0, 5.0], size=len(movies), p=[0.15, 0.45, 0.4])
        rows += [(user + 1, movie + 1, r, t) for movie, r, t in zip(movies, ratings, times, strict=True)]
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "ratings.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["userId", "movieId", "rating", "timestamp"])
        writer.writerows(rows)
    with open(folder / "movies.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["movieId", "title", "genres"])
        writer.writerows((m + 1, f"Movie {m} (1999)", "Drama") for m in range(N_MOVIES))
    frame = pd.DataFrame(rows, columns=["user", "pin", "rating", "timestamp"])
    frame = frame[frame["rating"] >= 4.0].copy()
    # every user and movie is rated, so the loader's 0-based ids are the original ids minus one
    frame["user"] -= 1
    frame["pin"] -= 1
    return frame


def expected_windows(engagements: pd.DataFrame) -> dict[str, set[tuple[int, int]]]:
    """The per-user protocol (5 engagements, 20% test, 20% of the rest validation) user by user."""
    windows: dict[str, set[tuple[int, int]]] = {"train": set(), "val": set(), "test": set()}
    for _, rows in engagements.sort_values("timestamp").groupby("user"):
        n = len(rows)
        if n < 5:
            continue
        pairs = list(zip(rows["user"], rows["pin"], strict=True))
        n_test = min(max(1, int(np.floor(0.2 * n + 0.5 + 1e-9))), n - 1)
        rest = n - n_test
        n_val = min(max(1, int(np.floor(0.2 * rest + 0.5 + 1e-9))), rest - 1)
        windows["train"] |= set(pairs[: rest - n_val])
        windows["val"] |= set(pairs[rest - n_val : rest])
        windows["test"] |= set(pairs[rest:])
    return windows


def pairs(frame: pd.DataFrame) -> set[tuple[int, int]]:
    return set(zip(frame["user"].tolist(), frame["pin"].tolist(), strict=True))


def csr_rows(csr, users: np.ndarray) -> dict[int, set[int]]:
    return {
        int(u): set(csr.values[csr.offsets[i] : csr.offsets[i + 1]].tolist()) for i, u in enumerate(users)
    }


@pytest.fixture
def job(tmp_path, monkeypatch):
    """Runs a popularity job on a random MovieLens folder and records what fit and retrieve saw."""
    engagements = write_ratings(tmp_path / "ml")
    seen: dict[str, list] = {"fit": [], "retrieve": []}
    fit, retrieve = Popularity.fit, Popularity.retrieve

    def spy_fit(self, data, split, context):
        seen["fit"].append((split, context))
        return fit(self, data, split, context)

    def spy_retrieve(self, task, k):
        seen["retrieve"].append(task)
        return retrieve(self, task, k)

    monkeypatch.setattr(Popularity, "fit", spy_fit)
    monkeypatch.setattr(Popularity, "retrieve", spy_retrieve)

    def run(*overrides: str) -> dict[str, float]:
        seen["fit"].clear()
        seen["retrieve"].clear()
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            cfg = compose(
                "train",
                overrides=["data=movielens", f"data.path={tmp_path / 'ml'}", "model=popularity", *overrides],
            )
        GlobalHydra.instance().clear()
        return run_job(cfg, tmp_path / "run", NoLoggers()).metrics

    return run, seen, expected_windows(engagements)


def test_movielens_refits_on_train_plus_val_by_default(job) -> None:
    run, seen, want = job
    metrics = run()
    assert metrics["eval/refit"] == 1.0
    # the job's model and the popularity reference row are both fitted on train+val
    assert len(seen["fit"]) == 2
    for split, context in seen["fit"]:
        assert pairs(split.train) == want["train"] | want["val"]
        assert split.val.empty
        np.testing.assert_array_equal(context.corpus, sorted({p for _, p in want["train"] | want["val"]}))
        # tuning sees the cut before merging: train -> val over the train pins
        tuning = context.tuning
        assert pairs(tuning.split.train) == want["train"]
        warm = {p for _, p in want["train"]}
        assert pairs(tuning.split.val) == {(u, p) for u, p in want["val"] if p in warm}
        np.testing.assert_array_equal(tuning.corpus, sorted(warm))
    # the test task excludes each user's train+val engagements and scores what is left of test
    task = seen["retrieve"][0]
    history: dict[int, set[int]] = {}
    for user, pin in want["train"] | want["val"]:
        history.setdefault(user, set()).add(pin)
    assert csr_rows(task.exclude, task.user_ids) == {int(u): history[int(u)] for u in task.user_ids}
    corpus = set(task.corpus.tolist())
    relevant: dict[int, set[int]] = {}
    for user, pin in want["test"]:
        if pin in corpus and pin not in history.get(user, set()):
            relevant.setdefault(user, set()).add(pin)
    assert csr_rows(task.relevant, task.user_ids) == relevant
    assert metrics["data/train_engagements"] == len(want["train"]) + len(want["val"])
    assert metrics["data/val_engagements"] == 0
    assert metrics["data/tuning_train_engagements"] == len(want["train"])


def test_without_refit_validation_is_neither_trained_on_nor_excluded(job) -> None:
    run, seen, want = job
    metrics = run("eval=default")
    assert metrics["eval/refit"] == 0.0
    assert "data/tuning_train_engagements" not in metrics
    for split, context in seen["fit"]:
        assert pairs(split.train) == want["train"]
        assert context.tuning is None
    task = seen["retrieve"][0]
    excluded = {(int(u), p) for u, pins in csr_rows(task.exclude, task.user_ids).items() for p in pins}
    assert excluded <= want["train"]
    assert not excluded & want["val"]


def test_refit_with_window_val_is_ignored_and_recorded(job, caplog) -> None:
    run, seen, want = job
    with caplog.at_level(logging.WARNING, logger="ebr.retrieval.refit"):
        metrics = run("eval.window=val")
    assert "eval.refit=true is ignored with eval.window=val" in caplog.text
    assert metrics["eval/refit"] == 0.0
    for split, context in seen["fit"]:
        assert pairs(split.train) == want["train"]
        assert context.tuning is None
    task = seen["retrieve"][0]
    warm = {p for _, p in want["train"]}
    assert {(int(u), p) for u, ps in csr_rows(task.relevant, task.user_ids).items() for p in ps} == {
        (u, p) for u, p in want["val"] if p in warm
    }
