"""Reading tables and turning their columns into canonical values; shared by the file loaders.

Every parser names the file, the column and the first bad row (0-based, header not counted) when a
value does not fit, so a loader built from them reports bad input the same way.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from ebr.data.csr import Ragged
from ebr.data.schema import EVENT_NAMES, CategoricalFeature, DataValidationError

TIMESTAMP_UNITS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
# a timestamp later than now by more than this is refused (clock skew allowed, a unit mix-up not)
FUTURE_SLACK_SECONDS = 86_400


def check_whole_text_file(path: Path, header: bool = True) -> None:
    """Refuse a text table that is empty or does not end in a newline (a file cut while copied).

    Args:
        path: the file (compressed files are not checked: their own format detects a cut).
        header: the first line is a header (it does not count as a row in the message).

    Raises:
        DataValidationError: naming the file and its last (cut) row.
    """
    size = path.stat().st_size
    if size == 0:
        raise DataValidationError(f"{path}: the file is empty (0 bytes): no events to read")
    with open(path, "rb") as handle:
        handle.seek(size - 1)
        last = handle.read(1)
    if last in (b"\n", b"\r"):
        return
    with open(path, "rb") as handle:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    row = lines - 1 if header else lines
    raise DataValidationError(
        f"{path}: does not end in a newline, so its last row (row {row}, line {lines + 1}) is probably cut"
        " (a truncated copy or download); refusing to read part of the file: copy it again whole"
    )


def check_timestamps(timestamps: np.ndarray, source: str, column: str, earliest: int | None = None) -> None:
    """Refuse timestamps in the future (later than now + a day) or before `earliest`, naming the first row.

    Args:
        timestamps: Unix seconds, in file row order.
        source: file named in the error.
        column: column named in the error.
        earliest: the first plausible timestamp (e.g. MovieLens began in 1995), None for no bound.

    Raises:
        DataValidationError: naming the file, the column and the first bad row.
    """
    latest = int(time.time()) + FUTURE_SLACK_SECONDS
    for bad, what in (
        (timestamps > latest, f"is in the future (after {_date(latest)})"),
        (timestamps < earliest if earliest is not None else None, f"is before {_date(earliest or 0)}"),
    ):
        if bad is None:
            continue
        rows = np.flatnonzero(bad)
        if len(rows):
            row = int(rows[0])
            raise DataValidationError(
                f"{source}: column '{column}' row {row}: timestamp {int(timestamps[row])}"
                f" ({_date(int(timestamps[row]))}) {what} ({len(rows)} such rows in all); a cut file,"
                " a wrong timestamp unit (data.timestamp_unit) or a corrupt value"
            )


def _date(seconds: int) -> str:
    try:
        return time.strftime("%Y-%m-%d", time.gmtime(seconds))
    except (OverflowError, OSError, ValueError):
        return "out of range"


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV (`.csv`, `.csv.gz`, `.tsv`) or Parquet (`.parquet`, `.pq`) file, chosen by suffix.

    Args:
        path: the file.

    Raises:
        FileNotFoundError: when the file does not exist.
        DataValidationError: for an unknown suffix or an unreadable file.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    name = path.name.lower()
    if name.endswith((".csv", ".tsv")):
        check_whole_text_file(path)
    try:
        if name.endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
        if name.endswith((".csv", ".csv.gz")):
            return pd.read_csv(path)
        if name.endswith((".tsv", ".tsv.gz")):
            return pd.read_csv(path, sep="\t")
    except (ValueError, OSError, pd.errors.ParserError) as error:
        raise DataValidationError(f"{path}: cannot be read: {error}") from error
    raise DataValidationError(f"{path}: unknown file type; expected .csv, .csv.gz, .tsv, .parquet or .pq")


def numeric_column(values: pd.Series, source: str, column: str, integer: bool = False) -> np.ndarray:
    """The values of a column as float64 (or int64), failing on the first missing or non-numeric value.

    Args:
        values: the column.
        source: file named in the error.
        column: column named in the error.
        integer: require whole numbers and return int64.

    Raises:
        DataValidationError: naming the file, the column and the first bad row (0-based, header
            not counted).
    """
    if values.dtype.kind in "iu":
        return values.to_numpy(np.int64) if integer else values.to_numpy(np.float64)
    if values.dtype.kind == "b":
        raise DataValidationError(f"{source}: column '{column}' holds booleans, expected numbers")
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(numbers)
    if integer:
        bad |= np.where(bad, False, numbers % 1 != 0)
    rows = np.flatnonzero(bad)
    if len(rows):
        row = int(rows[0])
        kind = "a whole number" if integer else "a number"
        raise DataValidationError(
            f"{source}: column '{column}' row {row}: value {_shown(values.iloc[row])} is not {kind}"
            f" ({len(rows)} bad rows in all)"
        )
    return numbers.astype(np.int64) if integer else numbers


def _shown(value: object) -> str:
    """A cell for a message: "missing (empty or NaN)", or the plain Python value's repr."""
    if pd.isna(value):
        return "missing (empty or NaN)"
    return repr(value.item() if isinstance(value, np.generic) else value)


def dense_ids(values: pd.Series, source: str, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Re-index arbitrary keys to 0..n-1 in sorted key order.

    Args:
        values: the keys (strings or numbers).
        source: file named in the error.
        column: column named in the error.

    Returns:
        (ids, uniques): int64 ids aligned with `values`, and the sorted distinct keys.

    Raises:
        DataValidationError: on a missing key, naming the first bad row.
    """
    missing = np.flatnonzero(values.isna().to_numpy())
    if len(missing):
        raise DataValidationError(
            f"{source}: column '{column}' row {int(missing[0])}: missing value ({len(missing)} in all)"
        )
    try:
        codes, uniques = pd.factorize(values, sort=True)
    except TypeError as error:  # e.g. a mix of strings and numbers cannot be ordered
        raise DataValidationError(f"{source}: column '{column}' mixes key types: {error}") from error
    return codes.astype(np.int64), np.asarray(uniques)


def require_columns(frame: pd.DataFrame, wanted: dict[str, str], source: str) -> None:
    """Fail unless every wanted column is in the frame.

    Args:
        frame: the table read from `source`.
        wanted: role (named in the error, e.g. "user") -> column name.
        source: file named in the error.

    Raises:
        DataValidationError: naming the file, the missing column, its role and the file's columns.
    """
    for role, column in wanted.items():
        if column not in frame.columns:
            raise DataValidationError(
                f"{source}: missing column '{column}' (columns.{role}); the file has {list(frame.columns)}"
            )


def timestamps_seconds(values: pd.Series, unit: str, source: str, column: str) -> np.ndarray:
    """A timestamp column as int64 Unix seconds (fractions floored).

    Args:
        values: the column: numbers, ISO date-time strings, or datetimes (e.g. from Parquet).
        unit: `s`, `ms`, `us` or `ns` for numbers, `datetime` for ISO strings; a datetime column
            carries its own unit and ignores this.
        source: file named in the error.
        column: column named in the error.

    Raises:
        ValueError: for an unknown unit.
        DataValidationError: naming the file, the column and the first bad row.
    """
    if values.dtype.kind == "M":  # Parquet timestamps carry their own unit
        if values.dt.tz is not None:
            values = values.dt.tz_convert(None)
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise DataValidationError(f"{source}: column '{column}' row {row}: missing timestamp")
        return values.to_numpy("datetime64[s]").astype(np.int64)
    if unit == "datetime":
        parsed = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
        bad = np.flatnonzero(parsed.isna().to_numpy())
        if len(bad):
            row = int(bad[0])
            raise DataValidationError(
                f"{source}: column '{column}' row {row}: value {values.iloc[row]!r} is not an ISO date-time"
            )
        return parsed.dt.tz_localize(None).to_numpy("datetime64[s]").astype(np.int64)
    if unit not in TIMESTAMP_UNITS:
        raise ValueError(f"data.timestamp_unit must be one of {[*TIMESTAMP_UNITS, 'datetime']}, got {unit!r}")
    scale = TIMESTAMP_UNITS[unit]
    if values.dtype.kind in "iu":
        return values.to_numpy(np.int64) // scale
    return np.floor(numeric_column(values, source, column) / scale).astype(np.int64)


def event_codes(values: pd.Series, source: str, column: str) -> np.ndarray:
    """An event-type column as int64 codes: given as the codes themselves or as their names (any case).

    Args:
        values: the column (IMPRESSION / CLICK / REPIN codes, or "impression" / "click" / "repin").
        source: file named in the error.
        column: column named in the error.

    Raises:
        DataValidationError: naming the file, the column and the first unknown event.
    """
    if values.dtype.kind in "iuf":
        return numeric_column(values, source, column, integer=True)
    by_name = {name: code for code, name in EVENT_NAMES.items()}
    codes = values.astype("string").str.lower().map(by_name)
    bad = np.flatnonzero(codes.isna().to_numpy())
    if len(bad):
        row = int(bad[0])
        raise DataValidationError(
            f"{source}: column '{column}' row {row}: unknown event {values.iloc[row]!r};"
            f" expected one of {sorted(by_name)} or the codes {sorted(EVENT_NAMES)}"
        )
    return codes.to_numpy(np.int64)


def multi_valued_feature(
    values: pd.Series, separator: str, ignore: tuple[str, ...] = ()
) -> tuple[CategoricalFeature, np.ndarray]:
    """Separator-joined strings -> a multi-valued feature over the sorted vocabulary of tokens.

    Args:
        values: one string per row; a missing value is an empty row.
        separator: token separator, e.g. "|".
        ignore: tokens left out (e.g. MovieLens' "(no genres listed)").

    Returns:
        (feature, vocabulary): the CSR feature and the token of each id.
    """
    exploded = (
        values.reset_index(drop=True).astype("string").fillna("").str.split(separator, regex=False).explode()
    )
    rows = exploded.index.to_numpy(np.int64)
    words = exploded.astype("string").fillna("").str.strip()
    keep = ((words != "") & ~words.isin(list(ignore))).to_numpy(bool)
    return token_feature(rows[keep], words[keep].to_numpy(object), len(values))


def token_feature(rows: np.ndarray, tokens: np.ndarray, n_rows: int) -> tuple[CategoricalFeature, np.ndarray]:
    """(row, token) pairs -> a multi-valued feature over the sorted token vocabulary.

    Args:
        rows: row of each pair.
        tokens: token of each pair.
        n_rows: rows of the table (rows without pairs are empty).

    Returns:
        (feature, vocabulary); each row keeps its tokens in their given order.
    """
    codes, vocabulary = pd.factorize(pd.Series(tokens, dtype=object), sort=True)
    bags = Ragged.from_rows(rows, codes, n_rows)
    feature = CategoricalFeature(bags.offsets, bags.values, len(vocabulary))
    return feature, np.asarray(vocabulary, dtype=object)
