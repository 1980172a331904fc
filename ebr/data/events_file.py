"""Load any CSV or Parquet event log (one row per event) into the canonical schema.

The column mapping names the user, item and timestamp columns (and optionally an event-type
or a rating column); user and item keys may be any strings or integers and are re-indexed to
dense ids in sorted key order, the original keys kept in `meta["original_id"]`. Optional
feature files add user / item features. The table helpers here (`read_table`,
`numeric_column`, `dense_ids`) are shared with the MovieLens loader.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ebr.data.schema import (
    CLICK,
    EVENT_NAMES,
    IMPRESSION,
    NO_INTEREST,
    CategoricalFeature,
    DataValidationError,
    FeatureTable,
    InteractionData,
    validate_events,
)

REQUIRED_COLUMNS = ("user", "item", "timestamp")
OPTIONAL_COLUMNS = ("event", "rating")
TIMESTAMP_UNITS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
FEATURE_SPEC_KEYS = {"path", "key", "categorical", "multi_valued", "separator", "dense", "interest"}


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
            f"{source}: column '{column}' row {row}: value {values.iloc[row]!r} is not {kind}"
            f" ({len(rows)} bad rows in all)"
        )
    return numbers.astype(np.int64) if integer else numbers


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


def _require_columns(frame: pd.DataFrame, wanted: dict[str, str], source: str) -> None:
    for role, column in wanted.items():
        if column not in frame.columns:
            raise DataValidationError(
                f"{source}: missing column '{column}' (columns.{role}); the file has {list(frame.columns)}"
            )


def _timestamps_seconds(values: pd.Series, unit: str, source: str, column: str) -> np.ndarray:
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


def _event_codes(values: pd.Series, source: str, column: str) -> np.ndarray:
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


def load_events_file(
    path: str | Path,
    columns: Mapping[str, str],
    min_rating: float | None = None,
    timestamp_unit: str = "s",
    user_features: str | Path | Mapping[str, Any] | None = None,
    item_features: str | Path | Mapping[str, Any] | None = None,
    name: str | None = None,
) -> InteractionData:
    """Load an event log into the canonical schema.

    Event types: with `columns.event`, its values are the codes 0/1/2 or the names impression /
    click / repin; without it every row is a click (an engagement). With `columns.rating` and
    `min_rating`, rows rated below `min_rating` become impressions (seen, not engaged).

    Args:
        path: the events file (CSV or Parquet, chosen by suffix).
        columns: `{user, item, timestamp}` column names, optionally `event` and `rating`.
        min_rating: engagement threshold on the rating column (needs `columns.rating`).
        timestamp_unit: `s`, `ms`, `us`, `ns` for numeric timestamps, or `datetime` for ISO
            strings; Parquet timestamp columns are converted whatever the unit.
        user_features: a feature file keyed by the user column, or a spec (see `docs/real_data.md`).
        item_features: the same for items; its `interest` entry names a multi-valued column that
            becomes the pins' `interest` feature.
        name: data set name (default `events:<file stem>`).

    Returns:
        InteractionData with every user and item of the log; events sorted by (timestamp, user, pin).

    Raises:
        DataValidationError: naming the file, the column and the first bad row.
    """
    path = Path(path)
    source = str(path)
    unknown = sorted(set(columns) - set(REQUIRED_COLUMNS) - set(OPTIONAL_COLUMNS))
    absent = [role for role in REQUIRED_COLUMNS if role not in columns]
    if unknown or absent:
        raise ValueError(
            f"data.columns: unknown key(s) {unknown}, missing key(s) {absent};"
            f" expected {list(REQUIRED_COLUMNS)} plus optional {list(OPTIONAL_COLUMNS)}"
        )
    if (min_rating is None) != ("rating" not in columns):
        raise ValueError("data.min_rating and data.columns.rating must be given together")
    frame = read_table(path)
    mapping = {role: str(column) for role, column in columns.items()}
    _require_columns(frame, mapping, source)

    users, user_keys = dense_ids(frame[mapping["user"]], source, mapping["user"])
    pins, pin_keys = dense_ids(frame[mapping["item"]], source, mapping["item"])
    timestamps = _timestamps_seconds(
        frame[mapping["timestamp"]], timestamp_unit, source, mapping["timestamp"]
    )
    if "event" in mapping:
        events = _event_codes(frame[mapping["event"]], source, mapping["event"])
    else:
        events = np.full(len(frame), CLICK, dtype=np.int64)
    if "rating" in mapping:
        ratings = numeric_column(frame[mapping["rating"]], source, mapping["rating"])
        events = np.where(ratings >= float(min_rating), events, IMPRESSION)

    table = pd.DataFrame(
        {
            "user": users,
            "pin": pins,
            "timestamp": timestamps,
            "event": events,
            "interest": np.full(len(frame), NO_INTEREST, dtype=np.int32),
        }
    )
    table = validate_events(table, len(user_keys), len(pin_keys), source)
    order = np.lexsort((table["pin"].to_numpy(), table["user"].to_numpy(), table["timestamp"].to_numpy()))
    table = table.iloc[order].reset_index(drop=True)

    user_table, _ = _feature_table(
        user_keys, "user_id", user_features, mapping["user"], interest_allowed=False
    )
    pin_table, n_interests = _feature_table(
        pin_keys, "pin_id", item_features, mapping["item"], interest_allowed=True
    )
    return InteractionData(
        name=name or f"events:{path.name.split('.')[0]}",
        events=table,
        users=user_table,
        pins=pin_table,
        n_interests=n_interests,
        source=source,
    )


def _feature_table(
    keys: np.ndarray,
    id_feature: str,
    spec: str | Path | Mapping[str, Any] | None,
    default_key: str,
    interest_allowed: bool,
) -> tuple[FeatureTable, int]:
    n = len(keys)
    categorical = {id_feature: CategoricalFeature.single(np.arange(n), n)}
    dense: dict[str, np.ndarray] = {}
    meta = {"original_id": keys}
    if spec is None:
        return FeatureTable(n, categorical, dense, meta), 0
    if isinstance(spec, str | Path):
        spec = {"path": spec}
    unknown = sorted(set(spec) - FEATURE_SPEC_KEYS)
    if unknown or "path" not in spec:
        raise ValueError(
            f"feature file spec: unknown key(s) {unknown}{'' if 'path' in spec else ', missing path'};"
            f" expected keys {sorted(FEATURE_SPEC_KEYS)}"
        )
    if spec.get("interest") is not None and not interest_allowed:
        raise ValueError("feature file spec: 'interest' is only supported for item features")
    path = Path(spec["path"])
    source = str(path)
    frame = read_table(path)
    key = str(spec.get("key") or default_key)
    separator = str(spec.get("separator") or "|")
    interest = spec.get("interest")
    explicit = any(spec.get(k) for k in ("categorical", "multi_valued", "dense"))
    if explicit:
        single = [str(c) for c in spec.get("categorical") or []]
        multi = [str(c) for c in spec.get("multi_valued") or []]
        floats = [str(c) for c in spec.get("dense") or []]
    else:  # a bare file: float columns are dense, everything else single-valued categorical
        others = [c for c in frame.columns if c not in (key, interest)]
        floats = [str(c) for c in others if frame[c].dtype.kind == "f"]
        single = [str(c) for c in others if frame[c].dtype.kind != "f"]
        multi = []
    wanted = {"key": key, **{f"feature '{c}'": c for c in [*single, *multi, *floats]}}
    if interest is not None:
        wanted["interest"] = str(interest)
    _require_columns(frame, wanted, source)

    duplicated = np.flatnonzero(frame[key].duplicated().to_numpy())
    if len(duplicated):
        row = int(duplicated[0])
        raise DataValidationError(
            f"{source}: column '{key}' row {row}: duplicate key {frame[key].iloc[row]!r}"
        )
    # every entity of the log must have a feature row
    position = pd.Index(frame[key]).get_indexer(pd.Index(keys))
    if (position < 0).any():
        missing = keys[position < 0]
        raise DataValidationError(
            f"{source}: {len(missing)} key(s) of the events are missing from column '{key}',"
            f" first {missing[0]!r}"
        )
    # convert in file order (so errors name file rows), then align rows to the dense entity ids
    for column in single:
        codes, _ = pd.factorize(frame[column], sort=True)  # nulls get -1, shifted to the reserved id 0
        categorical[column] = CategoricalFeature.single(codes[position] + 1, int(codes.max(initial=-1)) + 2)
    for column in multi:
        categorical[column], _ = multi_valued_feature(frame[column].iloc[position], separator)
    for column in floats:
        dense[column] = numeric_column(frame[column], source, column)[position].astype(np.float32)
    n_interests = 0
    if interest is not None:
        aligned = frame[str(interest)].iloc[position]
        categorical["interest"], vocabulary = multi_valued_feature(aligned, separator)
        n_interests = len(vocabulary)
    return FeatureTable(n, categorical, dense, meta), n_interests


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
    return csr_feature(rows[keep], words[keep].to_numpy(object), len(values))


def csr_feature(rows: np.ndarray, tokens: np.ndarray, n_rows: int) -> tuple[CategoricalFeature, np.ndarray]:
    """(row, token) pairs -> a multi-valued feature over the sorted token vocabulary.

    Args:
        rows: row of each pair.
        tokens: token of each pair.
        n_rows: rows of the table (rows without pairs are empty).

    Returns:
        (feature, vocabulary).
    """
    codes, vocabulary = pd.factorize(pd.Series(tokens, dtype=object), sort=True)
    order = np.argsort(rows, kind="stable")  # keeps each row's tokens in their given order
    counts = np.bincount(rows, minlength=n_rows)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    feature = CategoricalFeature(offsets, codes[order].astype(np.int64), len(vocabulary))
    return feature, np.asarray(vocabulary, dtype=object)
