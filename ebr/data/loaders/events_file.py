"""Load any CSV or Parquet event log (one row per event) into the canonical schema.

The column mapping names the user, item and timestamp columns (and optionally an event-type
or a rating column); user and item keys may be any strings or integers and are re-indexed to
dense ids in sorted key order, the original keys kept in `meta["original_id"]`. Optional
feature files add user / item features. The column parsers are in `ebr.data.loaders.columns`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ebr.data.loaders.columns import (
    check_timestamps,
    dense_ids,
    event_codes,
    multi_valued_feature,
    numeric_column,
    read_table,
    require_columns,
    timestamps_seconds,
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

REQUIRED_COLUMNS = ("user", "item", "timestamp")
OPTIONAL_COLUMNS = ("event", "rating")
FEATURE_SPEC_KEYS = {"path", "key", "categorical", "multi_valued", "separator", "dense", "interest"}


def load_events_file(
    path: str | Path,
    columns: Mapping[str, str],
    min_rating: float | None = None,
    timestamp_unit: str = "s",
    user_features: str | Path | Mapping[str, Any] | None = None,
    item_features: str | Path | Mapping[str, Any] | None = None,
    name: str | None = None,
    duplicates: str = "error",
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
        duplicates: `data.duplicates`: exact duplicate event rows are an `error` (the default: a
            log written twice would count its events twice), dropped (`drop`) or kept (`keep`).

    Returns:
        InteractionData with every user and item of the log; events sorted by (timestamp, user, pin).

    Raises:
        DataValidationError: naming the file, the column and the first bad row.
    """
    path = Path(path)
    source = str(path)
    _check_columns(columns, min_rating)
    frame = read_table(path)
    mapping = {role: str(column) for role, column in columns.items()}
    require_columns(frame, mapping, source)
    if len(frame) == 0:
        raise DataValidationError(f"{source}: holds no events (a header and no rows)")

    users, user_keys = dense_ids(frame[mapping["user"]], source, mapping["user"])
    pins, pin_keys = dense_ids(frame[mapping["item"]], source, mapping["item"])
    timestamps = timestamps_seconds(frame[mapping["timestamp"]], timestamp_unit, source, mapping["timestamp"])
    check_timestamps(timestamps, source, mapping["timestamp"])
    events = _event_codes(frame, mapping, min_rating, source)
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
    data = InteractionData(
        name=name or f"events:{path.name.split('.')[0]}",
        events=table,
        users=user_table,
        pins=pin_table,
        n_interests=n_interests,
        source=source,
    )
    return apply_duplicate_policy(data, duplicates)


def _check_columns(columns: Mapping[str, str], min_rating: float | None) -> None:
    """Refuse a column mapping with unknown or missing roles, or a rating threshold without its column."""
    unknown = sorted(set(columns) - set(REQUIRED_COLUMNS) - set(OPTIONAL_COLUMNS))
    absent = [role for role in REQUIRED_COLUMNS if role not in columns]
    if unknown or absent:
        raise ValueError(
            f"data.columns: unknown key(s) {unknown}, missing key(s) {absent};"
            f" expected {list(REQUIRED_COLUMNS)} plus optional {list(OPTIONAL_COLUMNS)}"
        )
    if (min_rating is None) != ("rating" not in columns):
        raise ValueError("data.min_rating and data.columns.rating must be given together")


def _event_codes(
    frame: pd.DataFrame, mapping: Mapping[str, str], min_rating: float | None, source: str
) -> np.ndarray:
    """Each row's event code: the event column's, else a click; rated below `min_rating`, an impression.

    Args:
        frame: the events as read.
        mapping: role -> column name (checked).
        min_rating: the engagement threshold on the rating column (given with it).
        source: the file, for error messages.
    """
    if "event" in mapping:
        events = event_codes(frame[mapping["event"]], source, mapping["event"])
    else:
        events = np.full(len(frame), CLICK, dtype=np.int64)
    if "rating" in mapping:
        ratings = numeric_column(frame[mapping["rating"]], source, mapping["rating"])
        events = np.where(ratings >= float(min_rating), events, IMPRESSION)
    return events


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
    require_columns(frame, wanted, source)

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
