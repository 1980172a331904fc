"""Load any MovieLens release from its original files (nothing is downloaded).

Formats, detected from the files in the folder:
- 100K: `u.data` (tab), `u.item` and `u.user` (pipe), Latin-1;
- 1M: `ratings.dat`, `movies.dat`, `users.dat` (`::`), Latin-1; 10M: the same without `users.dat`
  (half-star ratings; its `tags.dat` is not used);
- 20M / 25M / latest / latest-small: `ratings.csv`, `movies.csv` (UTF-8, with header); an
  optional `tags.csv` is recognised but not used (tags are free text, not ratings).

Mapping (see docs/real_data.md): a rating >= `min_rating` is a CLICK (an engagement); a lower
rating is kept as an IMPRESSION (the user saw the movie) unless `keep_impressions=False`.
Users and pins are the users and movies that have at least one rating, re-indexed densely in
the order of their original ids (kept in `meta["original_id"]`). Genres are the pins'
`interest` feature (ids in alphabetical genre order; "(no genres listed)" and 100K's "unknown"
give no interest); the title's year is bucketed into `year_bucket`; 100K / 1M demographics
become `age_bucket`, `gender` and `occupation` user features (zip codes only in meta).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from ebr.data.loaders.columns import (
    check_timestamps,
    check_whole_text_file,
    dense_ids,
    multi_valued_feature,
    numeric_column,
    token_feature,
)
from ebr.data.schema import (
    CLICK,
    IMPRESSION,
    NO_INTEREST,
    CategoricalFeature,
    DataValidationError,
    FeatureTable,
    InteractionData,
    apply_duplicate_policy,
    validate_events,
)

FORMATS: dict[str, tuple[str, ...]] = {
    "100k": ("u.data", "u.item", "u.user"),
    "1m": ("ratings.dat", "movies.dat", "users.dat"),
    "10m": ("ratings.dat", "movies.dat"),
    "csv": ("ratings.csv", "movies.csv"),
}
NO_GENRE = ("(no genres listed)", "unknown")
GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)  # fmt: skip
# 1M's age codes; 100K's exact ages are bucketed onto the same 7 buckets
AGE_CODES_1M = (1, 18, 25, 35, 45, 50, 56)
N_OCCUPATIONS_1M = 21
GENDERS = {"M": 0, "F": 1}
# year_bucket: 0 = unknown year, 1 = before 1950, then one bucket per interval, last = 2015 on
YEAR_EDGES = (1950, 1960, 1970, 1980, 1990, 1995, 2000, 2005, 2010, 2015)
_YEAR_IN_TITLE = r"\((\d{4})(?:\s*[-–]\s*\d{0,4})?\)\s*$"
# MovieLens collected its first ratings in 1995: an earlier timestamp is a cut or corrupt row
EARLIEST_TIMESTAMP = 788_918_400  # 1995-01-01 UTC


def detect_format(path: str | Path) -> str:
    """The MovieLens format of a folder: "100k", "1m", "10m" or "csv".

    Args:
        path: the folder holding the original files.

    Raises:
        FileNotFoundError: naming the folder and listing the expected file sets.
    """
    folder = Path(path)
    expected = "; ".join(f"{name}: {', '.join(files)}" for name, files in FORMATS.items())
    if not folder.is_dir():
        raise FileNotFoundError(
            f"MovieLens folder {folder} does not exist (data.path); expected a folder with one of"
            f" these file sets: {expected}"
        )
    for name, files in FORMATS.items():
        if all((folder / f).is_file() for f in files):
            return name
    present = sorted(p.name for p in folder.iterdir())[:20]
    raise FileNotFoundError(
        f"{folder} is not a recognised MovieLens folder: expected one of these file sets: {expected};"
        f" found {present}"
    )


def load_movielens(
    path: str | Path,
    min_rating: float = 4.0,
    keep_impressions: bool = True,
    year_edges: tuple[int, ...] = YEAR_EDGES,
    duplicates: str = "error",
) -> InteractionData:
    """Load a MovieLens release into the canonical schema.

    Args:
        path: folder with the release's original files (format detected from them).
        min_rating: ratings at or above this are engagements (CLICK).
        keep_impressions: keep lower ratings as IMPRESSION rows (False drops them).
        year_edges: increasing year boundaries of `year_bucket` (0 = unknown, 1 = before the first).
        duplicates: `data.duplicates`: `error` (default), `drop` or `keep` (`apply_duplicate_policy`).

    Returns:
        InteractionData with events sorted by (timestamp, user, pin), interest NO_INTEREST.

    Raises:
        FileNotFoundError: for a missing or unrecognised folder.
        DataValidationError: naming the file, column and first bad row.
    """
    folder = Path(path)
    kind = detect_format(folder)
    ratings, movies, genre_rows, genre_names, users, (ratings_file, movies_file, users_file) = _read_release(
        folder, kind
    )

    source = str(folder / ratings_file)
    # ids are numbers: order them numerically, not as the text the Latin-1 files are read as
    user_ids, user_keys = dense_ids(
        pd.Series(numeric_column(ratings["user"], source, "user", integer=True)), source, "user"
    )
    movie_ids, movie_keys = dense_ids(
        pd.Series(numeric_column(ratings["movie"], source, "movie", integer=True)), source, "movie"
    )
    rating = numeric_column(ratings["rating"], source, "rating")
    timestamps = numeric_column(ratings["timestamp"], source, "timestamp", integer=True)
    check_timestamps(timestamps, source, "timestamp", earliest=EARLIEST_TIMESTAMP)
    events = pd.DataFrame(
        {
            "user": user_ids,
            "pin": movie_ids,
            "timestamp": timestamps,
            "event": np.where(rating >= min_rating, CLICK, IMPRESSION),
            "interest": np.full(len(ratings), NO_INTEREST, dtype=np.int32),
        }
    )
    events = validate_events(events, len(user_keys), len(movie_keys), source)
    if not keep_impressions:
        events = events[events["event"] == CLICK]
    order = np.lexsort((events["pin"].to_numpy(), events["user"].to_numpy(), events["timestamp"].to_numpy()))
    events = events.iloc[order].reset_index(drop=True)

    pins, n_interests = _pin_table(
        movies, genre_rows, genre_names, movie_keys, str(folder / movies_file), year_edges
    )
    if users is None:
        user_table = FeatureTable(
            len(user_keys),
            {"user_id": CategoricalFeature.single(np.arange(len(user_keys)), len(user_keys))},
            meta={"original_id": user_keys},
        )
    else:
        user_table = _user_table(users, user_keys, str(folder / users_file), kind)
    data = InteractionData(
        name=f"movielens-{kind if kind != 'csv' else folder.name}",
        events=events,
        users=user_table,
        pins=pins,
        n_interests=n_interests,
        source=str(folder),
    )
    return apply_duplicate_policy(data, duplicates)


class _Release(NamedTuple):
    """One release's tables as read from its original files, and those files' names."""

    ratings: pd.DataFrame
    movies: pd.DataFrame
    genre_rows: np.ndarray
    genre_names: np.ndarray
    users: pd.DataFrame | None  # None: 10M and the csv releases have no user file
    files: tuple[str, str, str | None]  # ratings, movies, users


def _read_release(folder: Path, kind: str) -> _Release:
    """The ratings, movies (with genre rows and names) and users of one release (`kind`: its format)."""
    if kind == "100k":
        ratings = _read(folder / "u.data", "\t", ["user", "movie", "rating", "timestamp"])
        movies, genre_rows, genre_names = _movies_100k(folder / "u.item")
        users = _read(folder / "u.user", "|", ["user", "age", "gender", "occupation", "zip"])
        files = "u.data", "u.item", "u.user"
    elif kind in ("1m", "10m"):
        ratings = _read(folder / "ratings.dat", "::", ["user", "movie", "rating", "timestamp"])
        movies, genre_rows, genre_names = _movies_joined(
            _read(folder / "movies.dat", "::", ["movie", "title", "genres"]), folder / "movies.dat"
        )
        users = None  # 10M ships no user file
        if kind == "1m":
            users = _read(folder / "users.dat", "::", ["user", "gender", "age", "occupation", "zip"])
        files = "ratings.dat", "movies.dat", ("users.dat" if kind == "1m" else None)
    else:
        ratings = _read_csv(folder / "ratings.csv", ["userId", "movieId", "rating", "timestamp"])
        ratings.columns = ["user", "movie", "rating", "timestamp"]
        raw = _read_csv(folder / "movies.csv", ["movieId", "title", "genres"])
        raw.columns = ["movie", "title", "genres"]
        movies, genre_rows, genre_names = _movies_joined(raw, folder / "movies.csv")
        users, files = None, ("ratings.csv", "movies.csv", None)
    return _Release(ratings, movies, genre_rows, genre_names, users, files)


def _read(path: Path, sep: str, names: list[str]) -> pd.DataFrame:
    """A headerless Latin-1 file of the 100K, 1M and 10M releases, every column as text (whole or refused)."""
    check_whole_text_file(path, header=False)
    text = path.read_bytes().decode("latin-1")
    if len(sep) > 1:  # the C parser takes one-character separators only; \x1f never occurs in text
        text, sep = text.replace(sep, "\x1f"), "\x1f"
    try:
        frame = pd.read_csv(
            io.StringIO(text), sep=sep, header=None, dtype=str, quoting=csv.QUOTE_NONE, keep_default_na=False
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise DataValidationError(f"{path}: cannot be parsed: {error}") from error
    if frame.shape[1] != len(names):
        raise DataValidationError(
            f"{path}: expected {len(names)} fields per row ({', '.join(names)}), found {frame.shape[1]}"
        )
    frame.columns = names
    return frame


def _read_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    """A CSV of the 20M / 25M / latest releases, read whole or refused; the caller checks numeric columns."""
    check_whole_text_file(path)
    try:
        frame = pd.read_csv(path, encoding="utf-8", dtype={"title": str, "genres": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataValidationError(f"{path}: cannot be parsed: {error}") from error
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataValidationError(f"{path}: missing column(s) {missing}; the file has {list(frame.columns)}")
    return frame[columns]


def _movies_joined(movies: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """movie, title and "|"-joined genres -> (movies, genre row, genre name) pairs."""
    feature, vocabulary = multi_valued_feature(movies["genres"], "|", ignore=NO_GENRE)
    rows = feature.row_of_value()
    table = pd.DataFrame(
        {
            "movie": numeric_column(movies["movie"], str(path), "movie", integer=True),
            "title": movies["title"].astype(str).to_numpy(),
            "genres": movies["genres"].fillna("").astype(str).to_numpy(),
            "release": "",
        }
    )
    return table, rows, vocabulary[feature.values]


def _movies_100k(path: Path) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    names = ["movie", "title", "release", "video_release", "imdb", *GENRES_100K]
    raw = _read(path, "|", names)
    flags = np.stack(
        [numeric_column(raw[g], str(path), g, integer=True) for g in GENRES_100K], axis=1
    )  # (movies, 19) indicators
    bad = np.flatnonzero(((flags != 0) & (flags != 1)).any(axis=1))
    if len(bad):
        raise DataValidationError(f"{path}: row {int(bad[0])}: genre flags must be 0 or 1")
    rows, columns = np.nonzero(flags)
    names_of = np.asarray(GENRES_100K, dtype=object)[columns]
    joined = pd.Series(names_of).groupby(rows).agg("|".join).reindex(range(len(raw)), fill_value="")
    table = pd.DataFrame(
        {
            "movie": numeric_column(raw["movie"], str(path), "movie", integer=True),
            "title": raw["title"].to_numpy(),
            "genres": joined.to_numpy(),
            "release": raw["release"].to_numpy(),
        }
    )
    keep = ~np.isin(names_of, NO_GENRE)
    return table, rows[keep], names_of[keep]


def _pin_table(
    movies: pd.DataFrame,
    genre_rows: np.ndarray,
    genre_names: np.ndarray,
    movie_keys: np.ndarray,
    source: str,
    year_edges: tuple[int, ...],
) -> tuple[FeatureTable, int]:
    """Pin features of the rated movies, in dense pin-id order."""
    duplicated = np.flatnonzero(movies["movie"].duplicated().to_numpy())
    if len(duplicated):
        row = int(duplicated[0])
        raise DataValidationError(
            f"{source}: column 'movie' row {row}: duplicate movie id {movies['movie'][row]}"
        )
    position = pd.Index(movies["movie"]).get_indexer(pd.Index(movie_keys))
    if (position < 0).any():
        missing = movie_keys[position < 0]
        raise DataValidationError(
            f"{source}: {len(missing)} movie id(s) of the ratings are not in this file, first {missing[0]}"
        )
    n = len(movie_keys)
    # keep only the genre pairs of rated movies, renumbered to pin ids
    pin_of_row = np.full(len(movies), -1, dtype=np.int64)
    pin_of_row[position] = np.arange(n)
    kept = pin_of_row[genre_rows] >= 0
    interest, vocabulary = token_feature(pin_of_row[genre_rows][kept], genre_names[kept], n)

    titles = movies["title"].to_numpy(object)[position]
    year = pd.Series(titles).str.extract(_YEAR_IN_TITLE)[0]
    release = pd.Series(movies["release"].to_numpy(object)[position]).str.extract(r"(\d{4})\s*$")[0]
    year = pd.to_numeric(year.fillna(release), errors="coerce").fillna(-1).to_numpy(np.int64)
    edges = np.asarray(year_edges, dtype=np.int64)
    if len(edges) and np.any(np.diff(edges) <= 0):
        raise ValueError(f"data.year_edges must be strictly increasing, got {list(year_edges)}")
    bucket = np.where(year < 0, 0, np.searchsorted(edges, year, side="right") + 1)
    categorical = {
        "pin_id": CategoricalFeature.single(np.arange(n), n),
        "interest": interest,
        "year_bucket": CategoricalFeature.single(bucket, len(edges) + 2),
    }
    meta = {
        "original_id": movie_keys,
        "title": titles,
        "year": year,
        "genres": movies["genres"].to_numpy(object)[position],
    }
    return FeatureTable(n, categorical, meta=meta), len(vocabulary)


def _user_table(users: pd.DataFrame, user_keys: np.ndarray, source: str, kind: str) -> FeatureTable:
    """Demographic features of the rating users (100K / 1M), in dense user-id order."""
    keys = numeric_column(users["user"], source, "user", integer=True)
    duplicated = np.flatnonzero(pd.Series(keys).duplicated().to_numpy())
    if len(duplicated):
        raise DataValidationError(f"{source}: column 'user' row {int(duplicated[0])}: duplicate user id")
    age = numeric_column(users["age"], source, "age", integer=True)
    if kind == "1m":
        age_bucket = np.searchsorted(AGE_CODES_1M, age)
        bad = np.flatnonzero(
            np.asarray((*AGE_CODES_1M, -1))[np.minimum(age_bucket, len(AGE_CODES_1M))] != age
        )
        occupation = numeric_column(users["occupation"], source, "occupation", integer=True)
        bad_occupation = np.flatnonzero((occupation < 0) | (occupation >= N_OCCUPATIONS_1M))
        n_occupations = N_OCCUPATIONS_1M
    else:
        age_bucket = np.searchsorted(AGE_CODES_1M[1:], age, side="right")
        bad = np.flatnonzero(age < 0)
        occupation, vocabulary = pd.factorize(users["occupation"].str.strip().str.lower(), sort=True)
        bad_occupation = np.flatnonzero(users["occupation"].str.strip().to_numpy() == "")
        n_occupations = len(vocabulary)
    if len(bad):
        row = int(bad[0])
        raise DataValidationError(f"{source}: column 'age' row {row}: invalid age {users['age'][row]!r}")
    if len(bad_occupation):
        row = int(bad_occupation[0])
        raise DataValidationError(
            f"{source}: column 'occupation' row {row}: invalid occupation {users['occupation'][row]!r}"
        )
    gender = users["gender"].str.strip().str.upper().map(GENDERS)
    bad_gender = np.flatnonzero(gender.isna().to_numpy())
    if len(bad_gender):
        row = int(bad_gender[0])
        raise DataValidationError(
            f"{source}: column 'gender' row {row}: expected M or F, got {users['gender'][row]!r}"
        )

    position = pd.Index(keys).get_indexer(pd.Index(user_keys))
    if (position < 0).any():
        missing = user_keys[position < 0]
        raise DataValidationError(
            f"{source}: {len(missing)} user id(s) of the ratings are not in this file, first {missing[0]}"
        )
    n = len(user_keys)
    categorical = {
        "user_id": CategoricalFeature.single(np.arange(n), n),
        "age_bucket": CategoricalFeature.single(age_bucket[position], len(AGE_CODES_1M)),
        "gender": CategoricalFeature.single(gender.to_numpy(np.int64)[position], len(GENDERS)),
        "occupation": CategoricalFeature.single(np.asarray(occupation)[position], n_occupations),
    }
    meta = {"original_id": user_keys, "zip": users["zip"].to_numpy(object)[position]}
    return FeatureTable(n, categorical, meta=meta)


def genre_names(data: InteractionData) -> list[str]:
    """The genre of each interest id of a MovieLens data set (alphabetical, as the loader numbers them).

    Args:
        data: a data set returned by `load_movielens`.
    """
    genres = pd.Series(data.pins.meta["genres"]).str.split("|", regex=False).explode().str.strip()
    names = sorted({g for g in genres.dropna() if g and g not in NO_GENRE})
    if len(names) != data.n_interests:
        raise ValueError(f"{data.source}: pins' genres give {len(names)} names, data has {data.n_interests}")
    return names
