"""Ragged arrays: rows of different lengths stored as one values array cut by offsets.

Row i of a ragged array is `values[offsets[i]:offsets[i + 1]]`. Every ragged array in ebr is built
by `offsets_from_lengths` (directly, or through `Ragged.from_lengths` / `Ragged.from_rows` /
`Csr.from_pairs`), so there is one place that knows how offsets are laid out.

- `Ragged`: any rows of int64 values, in any order (a categorical feature's bags, pins grouped
  by interest). `ebr.data.schema.CategoricalFeature` is a `Ragged` with a cardinality and weights.
- `Csr`: a `Ragged` whose rows are sorted sets (strictly increasing): per-user relevant items,
  items to exclude, candidates. Serving and evaluation both build on it without depending on
  each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Csr.contains_pairs uses a bitmap over the id range up to this many ids, or as many as it looks up
_BITMAP_MIN = 1 << 20


def offsets_from_lengths(lengths: np.ndarray) -> np.ndarray:
    """The int64 offsets (length n + 1, starting at 0) of n consecutive rows of the given lengths.

    Args:
        lengths: non-negative integer row lengths (booleans count as 0 / 1).

    Raises:
        ValueError: for a length that is negative or not an integer.
    """
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or (lengths.size and lengths.dtype.kind not in "biu"):
        raise ValueError(f"row lengths must be a 1-D integer array, got {lengths.dtype} {lengths.shape}")
    if lengths.size and lengths.min() < 0:
        raise ValueError(f"row lengths must be >= 0, got {lengths.min()}")
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def rows_of_values(lengths: np.ndarray) -> np.ndarray:
    """The row index of each value of consecutive rows of the given lengths (0, 0, 1, 2, 2, ...).

    Args:
        lengths: non-negative integer row lengths.
    """
    return np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)


@dataclass(frozen=True)
class Ragged:
    """Rows of int64 values of different lengths: row i is values[offsets[i]:offsets[i+1]].

    Build one with `from_lengths` or `from_rows` rather than by hand.

    Args:
        offsets: integer array of length n_rows + 1, starting at 0, non-decreasing, ending at len(values).
        values: integer values of all rows, row after row.
    """

    offsets: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        kind = type(self).__name__
        offsets = np.asarray(self.offsets)
        values = np.asarray(self.values)
        if offsets.ndim != 1 or len(offsets) == 0 or offsets.dtype.kind not in "iu":
            raise ValueError(
                f"{kind}.offsets must be a non-empty 1-D integer array, got shape {offsets.shape}"
            )
        if values.ndim != 1 or (values.size and values.dtype.kind not in "iu"):
            raise ValueError(f"{kind}.values must be a 1-D integer array, got {values.dtype} {values.shape}")
        offsets = offsets.astype(np.int64, copy=False)
        values = values.astype(np.int64, copy=False)
        if offsets[0] != 0 or offsets[-1] != len(values) or np.any(np.diff(offsets) < 0):
            raise ValueError(
                f"{kind}.offsets must start at 0, be non-decreasing and end at len(values)={len(values)}"
            )
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "values", values)

    @staticmethod
    def from_lengths(lengths: np.ndarray, values: np.ndarray) -> Ragged:
        """Rows of the given lengths cut from `values` in order.

        Args:
            lengths: the length of each row.
            values: all rows' values, row after row (len(values) == sum(lengths)).
        """
        return Ragged(offsets_from_lengths(lengths), values)

    @staticmethod
    def from_rows(rows: np.ndarray, values: np.ndarray, n_rows: int) -> Ragged:
        """Group (row, value) pairs by row, keeping each row's values in their given order.

        Args:
            rows: the row of each value, in [0, n_rows).
            values: the values.
            n_rows: number of rows (rows without values are empty).
        """
        rows = np.asarray(rows, dtype=np.int64).ravel()
        values = np.asarray(values).ravel()
        _check_rows(rows, len(values), n_rows, "Ragged.from_rows")
        order = np.argsort(rows, kind="stable")
        return Ragged(offsets_from_lengths(np.bincount(rows, minlength=n_rows)), values[order])

    @property
    def n_rows(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        """Number of values in each row."""
        return np.diff(self.offsets)

    def row_of_value(self) -> np.ndarray:
        """The row index of each entry of `values`."""
        return rows_of_values(self.lengths())

    def take(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The given rows, concatenated in the given order (vectorised, rows may repeat).

        Args:
            rows: row indices in [0, n_rows).

        Returns:
            (lengths, index): each taken row's length, and the positions in `values` of the taken
            rows' values (so `values[index]`, or aligned arrays such as weights, gathers them).
        """
        rows = np.asarray(rows, dtype=np.int64)
        starts = self.offsets[rows]
        lengths = self.offsets[rows + 1] - starts
        total = int(lengths.sum())
        # position of each output value = its row's start + its rank within the row
        row_of_value = rows_of_values(lengths)
        first_out = np.cumsum(lengths) - lengths
        index = starts[row_of_value] + (np.arange(total) - first_out[row_of_value])
        return lengths, index


def _check_rows(rows: np.ndarray, n_values: int, n_rows: int, caller: str) -> None:
    if len(rows) != n_values:
        raise ValueError(f"{caller}: {len(rows)} rows but {n_values} values")
    if len(rows) and (rows.min() < 0 or rows.max() >= n_rows):
        raise ValueError(f"{caller}: row indices must be in [0, {n_rows}), got {rows.min()}..{rows.max()}")


@dataclass(frozen=True)
class Csr(Ragged):
    """Ragged rows of int64 ids, each row strictly increasing (a sorted set).

    Args:
        offsets: int64 array of length n_rows + 1, starting at 0, non-decreasing, ending at len(values).
        values: int64 ids, sorted and distinct within each row.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        # a non-increasing step is only allowed where a new row starts
        steps = np.flatnonzero(np.diff(self.values) <= 0) + 1
        if len(steps) and not np.all(np.isin(steps, self.offsets)):
            raise ValueError("Csr.values must be strictly increasing within each row (sorted, no duplicates)")

    @staticmethod
    def from_pairs(rows: np.ndarray, values: np.ndarray, n_rows: int) -> Csr:
        """Build from (row, value) pairs in any order; duplicate pairs are kept once.

        Args:
            rows: row index of each pair, in [0, n_rows).
            values: id of each pair.
            n_rows: number of rows (rows without pairs are empty).
        """
        rows = np.asarray(rows, dtype=np.int64).ravel()
        values = np.asarray(values, dtype=np.int64).ravel()
        _check_rows(rows, len(values), n_rows, "Csr.from_pairs")
        order = np.lexsort((values, rows))
        rows, values = rows[order], values[order]
        first = np.ones(len(rows), dtype=bool)
        first[1:] = (rows[1:] != rows[:-1]) | (values[1:] != values[:-1])
        rows, values = rows[first], values[first]
        return Csr(offsets_from_lengths(np.bincount(rows, minlength=n_rows)), values)

    def slice(self, start: int, stop: int) -> Csr:
        """Rows start..stop-1 as a new Csr.

        Args:
            start: first row.
            stop: one past the last row (clipped to n_rows).
        """
        stop = min(stop, self.n_rows)
        offsets = self.offsets[start : stop + 1]
        return Csr(offsets - offsets[0], self.values[offsets[0] : offsets[-1]])

    def contains_pairs(self, rows: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Whether ids[j] is in row rows[j], for every j (arrays of any matching shape).

        Args:
            rows: row indices in [0, n_rows).
            ids: ids to look up; negative padding ids are never contained.
        """
        rows, ids = np.broadcast_arrays(np.asarray(rows, dtype=np.int64), np.asarray(ids, dtype=np.int64))
        if self.values.size == 0 or ids.size == 0:
            return np.zeros(ids.shape, dtype=bool)
        # (row, code of id) packs into one int64 key; rows are already sorted and ids sorted within
        # rows, so the packed keys of `values` are sorted too. An id's code is its offset from the
        # smallest value whenever rows x that range fits in int64, which skips the ranking pass
        # (np.unique and a search of every id), most of a serving search's filtering time;
        # otherwise it is the id's rank among the distinct values
        low = int(self.values.min())
        span = int(self.values.max()) - low + 1
        if self.n_rows * span < 2**62:
            value_codes = self.values - low
            known = (ids >= low) & (ids < low + span)
            codes = np.where(known, ids - low, 0)
            if span <= max(ids.size, _BITMAP_MIN):
                # most looked-up ids are in no row at all (a serving search's candidates against
                # the batch's exclusions): a bitmap of the codes any row holds settles those in one
                # gather, and only the rest are searched (ranks, below, are all held)
                held = np.zeros(span, dtype=bool)
                held[value_codes] = True
                known &= held[codes]
        else:
            vocabulary = np.unique(self.values)
            span = len(vocabulary)
            if self.n_rows * span >= 2**62:
                raise ValueError("Csr.contains_pairs: rows x distinct ids too large to pack into int64 keys")
            value_codes = np.searchsorted(vocabulary, self.values)
            codes = np.minimum(np.searchsorted(vocabulary, ids), span - 1)
            known = vocabulary[codes] == ids
        found = np.zeros(ids.shape, dtype=bool)
        where = np.nonzero(known)
        value_keys = self.row_of_value() * span + value_codes
        keys = rows[where] * span + codes[where]
        position = np.minimum(np.searchsorted(value_keys, keys), len(value_keys) - 1)
        found[where] = value_keys[position] == keys
        return found

    def contains(self, matrix: np.ndarray) -> np.ndarray:
        """Boolean mask: matrix[i, j] is in row i (matrix has one row per Csr row).

        Args:
            matrix: (n_rows, K) ids.
        """
        matrix = np.asarray(matrix)
        if matrix.ndim != 2 or matrix.shape[0] != self.n_rows:
            raise ValueError(f"Csr.contains: expected a ({self.n_rows}, K) matrix, got shape {matrix.shape}")
        return self.contains_pairs(np.arange(self.n_rows)[:, None], matrix)


def first_kept(keep: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices of the first k True entries of each row, in their original order.

    Args:
        keep: (M, C) boolean mask.
        k: number of columns wanted.

    Returns:
        (columns (M, k) int64, valid (M, k) bool); `valid` is False where a row had fewer than k
        kept entries (the column index there is meaningless and must be masked by the caller).
    """
    keep = np.asarray(keep, dtype=bool)
    # a stable sort of ~keep moves kept columns first without reordering them
    columns = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    valid = np.take_along_axis(keep, columns, axis=1)
    if columns.shape[1] < k:
        pad = k - columns.shape[1]
        columns = np.pad(columns, ((0, 0), (0, pad)))
        valid = np.pad(valid, ((0, 0), (0, pad)))
    return columns.astype(np.int64, copy=False), valid
