"""The MovieLens 10M, 20M and 25M releases, each as a small folder in its exact format: the file set
the release ships, its separators, header lines and quoting (the 1M, 100K and latest formats are in
test_movielens.py, whose tables and checks these reuse)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from test_movielens import MOVIES, RATINGS, T0, check_common

from ebr.data.loaders.movielens import detect_format, load_movielens
from ebr.data.schema import CLICK, IMPRESSION


def write_10m(folder: Path) -> Path:
    """ml-10M100K: `::`-separated ratings.dat (half stars), movies.dat and tags.dat; no users.dat."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"{u}::{m}::{r:g}::{t}" for u, m, r, t in RATINGS]
    (folder / "ratings.dat").write_text("\n".join(lines) + "\n", encoding="latin-1")
    movies = [f"{m}::{title}::{'|'.join(g) or '(no genres listed)'}" for m, title, g in MOVIES]
    (folder / "movies.dat").write_text("\n".join(movies) + "\n", encoding="latin-1")
    (folder / "tags.dat").write_text(f"3::5::funny::{T0}\n", encoding="latin-1")
    (folder / "README.html").write_text("<html></html>\n")
    return folder


def write_20m_or_25m(folder: Path) -> Path:
    """ml-20m / ml-25m: ratings, movies, tags, links and the tag genome as CSV with a header line;
    a title with a comma is quoted (`"Alpha, The (1994)"`)."""
    folder.mkdir(parents=True, exist_ok=True)
    titles = {5: "Alpha, The (1994)"}
    tables = {
        "ratings.csv": (
            ["userId", "movieId", "rating", "timestamp"],
            [(u, m, f"{r:.1f}", t) for u, m, r, t in RATINGS],
        ),
        "movies.csv": (
            ["movieId", "title", "genres"],
            [(m, titles.get(m, title), "|".join(g) or "(no genres listed)") for m, title, g in MOVIES],
        ),
        "tags.csv": (["userId", "movieId", "tag", "timestamp"], [(3, 5, "dark comedy", T0)]),
        "links.csv": (["movieId", "imdbId", "tmdbId"], [(m, f"{m:07d}", m + 1000) for m, _, _ in MOVIES]),
        "genome-scores.csv": (["movieId", "tagId", "relevance"], [(5, 1, 0.0250000000000000)]),
        "genome-tags.csv": (["tagId", "tag"], [(1, "007")]),
    }
    for name, (header, rows) in tables.items():
        with open(folder / name, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
    return folder


def test_10m_release_without_users_file(tmp_path: Path) -> None:
    folder = write_10m(tmp_path / "ml-10M100K")
    assert detect_format(folder) == "10m", "ratings.dat + movies.dat without users.dat is 10M, not 1M"
    data = load_movielens(folder)
    check_common(data)
    assert data.name == "movielens-10m"
    assert set(data.users.categorical) == {"user_id"}, "10M has no demographics"
    # half stars as the release writes them ("3.5", "4.5"); check_common compared each row's event
    # with rating >= 4: (10, 20, 4.5) is an engagement, (7, 20, 3.5) an impression
    assert "7::20::3.5::" in (folder / "ratings.dat").read_text()
    users, pins = data.users.meta["original_id"], data.pins.meta["original_id"]
    kinds = {
        (int(users[u]), int(pins[p])): int(e) for u, p, e in data.events[["user", "pin", "event"]].to_numpy()
    }
    assert kinds[(10, 20)] == CLICK
    assert kinds[(7, 20)] == IMPRESSION


@pytest.mark.parametrize("release", ["ml-20m", "ml-25m"])
def test_20m_and_25m_csv_releases(tmp_path: Path, release: str) -> None:
    folder = write_20m_or_25m(tmp_path / release)
    assert detect_format(folder) == "csv"
    data = load_movielens(folder)
    check_common(data)
    assert data.name == f"movielens-{release}"
    assert data.pins.meta["title"][0] == "Alpha, The (1994)", "a quoted title with a comma"
    assert int(data.pins.meta["year"][0]) == 1994
