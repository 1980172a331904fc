"""scripts/bench/peer_recbole.py without RecBole: the atomic files it exports hold ebr's refit split
(checked against the split recomputed here, on a made-up MovieLens folder), in RecBole's format,
and the script skips with one line when RecBole's environment cannot be built."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ebr.data.loaders.movielens import load_movielens
from ebr.data.splits import per_user_temporal_split

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
from bench import peer_recbole  # noqa: E402

HEADER = ["user_id:token", "item_id:token", "timestamp:float"]


@pytest.fixture(scope="module")
def movielens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ml-latest-small-format folder: 9 users rating 10 of 16 movies each, ratings 2 to 5."""
    folder = tmp_path_factory.mktemp("ml-made-up")
    rng = np.random.default_rng(3)
    rows = []
    for user in range(1, 10):
        for j, movie in enumerate(rng.choice(np.arange(1, 17), size=10, replace=False)):
            rating = rng.choice([2.0, 4.0, 4.5, 5.0])
            rows.append((user, int(movie) * 10, rating, 964_980_000 + 100 * j + user))
    ratings = pd.DataFrame(rows, columns=["userId", "movieId", "rating", "timestamp"])
    ratings.to_csv(folder / "ratings.csv", index=False)
    movies = pd.DataFrame(
        {"movieId": np.arange(1, 17) * 10, "title": [f"M{i} (1990)" for i in range(16)], "genres": "Drama"}
    )
    movies.to_csv(folder / "movies.csv", index=False)
    return folder


def _read(path: Path) -> tuple[list[str], pd.DataFrame]:
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
    frame = pd.read_csv(path, sep="\t", skiprows=1, header=None, names=["user", "pin", "timestamp"])
    return header, frame


def _pairs(frame: pd.DataFrame) -> set[tuple[int, int]]:
    return set(zip(frame["user"].tolist(), frame["pin"].tolist(), strict=True))


def _labels(window: pd.DataFrame, train: pd.DataFrame) -> set[tuple[int, int]]:
    """Window pairs on a pin engaged in train, less each user's own train pairs (ebr's task rule)."""
    warm = set(train["pin"].tolist())
    return {(u, p) for u, p in _pairs(window) if p in warm} - _pairs(train)


def test_export_writes_ebrs_refit_split_in_recboles_atomic_format(movielens: Path, tmp_path: Path) -> None:
    peer_recbole.export_split(movielens, tmp_path)
    # the split recomputed straight from the loader and split functions, with data=movielens's values
    data = load_movielens(movielens, min_rating=4.0)
    engaged = data.engagements()
    split = per_user_temporal_split(data, 5, 0.2, 0.2)
    merged = per_user_temporal_split(data, 5, 0.2, 0.2, refit=True)
    assert len(split.val)
    assert len(merged.test)
    assert len(merged.train) == len(split.train) + len(split.val) + (split.cold["val_cold"])
    files = {
        (name, part): _read(tmp_path / name / f"{name}.{part}.inter")
        for name in ("ebr_tune", "ebr_refit")
        for part in ("train", "valid", "test")
    }
    assert all(header == HEADER for header, _ in files.values())
    tune_train, refit_train = files["ebr_tune", "train"][1], files["ebr_refit", "train"][1]
    key = ["user", "pin", "timestamp"]
    for frame, expected in ((tune_train, split.train), (refit_train, merged.train)):
        pd.testing.assert_frame_equal(
            frame.sort_values(key).reset_index(drop=True),
            expected[key].astype(np.int64).sort_values(key).reset_index(drop=True),
        )
    # validation and test: ebr's labels, one row per pair, with the pair's first time in its window
    valid, test = files["ebr_tune", "valid"][1], files["ebr_refit", "test"][1]
    assert _pairs(valid) == _labels(split.val, split.train)
    assert len(valid) == len(_pairs(valid))
    assert _pairs(test) == _labels(merged.test, merged.train)
    assert len(test) == len(_pairs(test))
    first = engaged.groupby(["user", "pin"])["timestamp"].min()
    assert (test["timestamp"].to_numpy() == first.loc[list(zip(test["user"], test["pin"]))].to_numpy()).all()
    # the never-read third files repeat the labels, so RecBole's item set is ebr's corpus
    pd.testing.assert_frame_equal(files["ebr_tune", "test"][1], valid)
    pd.testing.assert_frame_equal(files["ebr_refit", "valid"][1], test)
    for name, train in (("ebr_tune", tune_train), ("ebr_refit", refit_train)):
        items = set().union(*(set(files[name, part][1]["pin"]) for part in ("train", "valid", "test")))
        assert items == set(train["pin"])


def test_the_script_skips_with_one_line_when_recbole_cannot_be_installed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = []

    def pip_fails(command: list[str], **_: object) -> subprocess.CompletedProcess:
        calls.append(command)
        failed = "pip" in command
        error = "ERROR: No matching distribution found for torch==2.13.0+cpu" if failed else ""
        return subprocess.CompletedProcess(command, 1 if failed else 0, "", error)

    out = tmp_path / "out"
    code = peer_recbole.main(["--out", str(out), "--venv", str(tmp_path / "venv")], runner=pip_fails)
    printed = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    assert printed == [
        "peer_recbole: skipped: RecBole cannot be installed: pip install of torch and RecBole's requirements"
        " failed (exit 1): ERROR: No matching distribution found for torch==2.13.0+cpu"
    ]
    assert [c[1:3] for c in calls] == [["-m", "venv"], ["-m", "pip"]]  # stopped at the failed step
    assert not out.exists()  # nothing exported, nothing run


def test_a_built_environment_is_reused_without_running_anything(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    (venv / ".peer_recbole_pins").write_text(
        "\n".join((peer_recbole.TORCH, peer_recbole.RECBOLE, *peer_recbole.REQUIREMENTS))
    )

    def never(*_: object, **__: object) -> subprocess.CompletedProcess:
        raise AssertionError("nothing should run")

    assert peer_recbole.ensure_venv(venv, runner=never) == (venv / "bin" / "python", "")


def test_the_two_tower_arm_spells_out_the_tuned_settings_when_the_experiment_file_is_missing() -> None:
    assert peer_recbole.ebr_overrides("experiment=movielens_tuned_missing seed=3") == (
        peer_recbole.TUNED_OVERRIDES + " seed=3"
    )
    assert peer_recbole.ebr_overrides("experiment=movielens model=ease") == "experiment=movielens model=ease"
