"""Per-row id lists (CSR) and row-wise selection helpers shared by serving and evaluation.

A `Csr` holds, for each row (a user), a sorted list of distinct ids (pins): relevant items,
items to exclude, candidates. It is a plain data structure, so serving and evaluation both
build on it without depending on each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Csr:
    """Ragged rows of int64 ids: row i is values[offsets[i]:offsets[i+1]], strictly increasing.

    Args:
        offsets: int64 array of length n_rows + 1, starting at 0, non-decreasing, ending at len(values).
        values: int64 ids, sorted and distinct within each row.
    """

    offsets: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        offsets = np.asarray(self.offsets)
        values = np.asarray(self.values)
        if offsets.ndim != 1 or len(offsets) == 0 or offsets.dtype.kind not in "iu":
            raise ValueError(f"Csr.offsets must be a non-empty 1-D integer array, got shape {offsets.shape}")
        if values.ndim != 1 or (values.size and values.dtype.kind not in "iu"):
            raise ValueError(f"Csr.values must be a 1-D integer array, got {values.dtype} {values.shape}")
        offsets = offsets.astype(np.int64, copy=False)
        values = values.astype(np.int64, copy=False)
        if offsets[0] != 0 or offsets[-1] != len(values) or np.any(np.diff(offsets) < 0):
            raise ValueError(
                f"Csr.offsets must start at 0, be non-decreasing and end at len(values)={len(values)}"
            )
        # a non-increasing step is only allowed where a new row starts
        steps = np.flatnonzero(np.diff(values) <= 0) + 1
        if len(steps) and not np.all(np.isin(steps, offsets)):
            raise ValueError("Csr.values must be strictly increasing within each row (sorted, no duplicates)")
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "values", values)

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
        if len(rows) != len(values):
            raise ValueError(f"Csr.from_pairs: {len(rows)} rows but {len(values)} values")
        if len(rows) and (rows.min() < 0 or rows.max() >= n_rows):
            raise ValueError(
                f"Csr.from_pairs: row indices must be in [0, {n_rows}), got {rows.min()}..{rows.max()}"
            )
        order = np.lexsort((values, rows))
        rows, values = rows[order], values[order]
        first = np.ones(len(rows), dtype=bool)
        first[1:] = (rows[1:] != rows[:-1]) | (values[1:] != values[:-1])
        rows, values = rows[first], values[first]
        offsets = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n_rows), out=offsets[1:])
        return Csr(offsets, values)

    @property
    def n_rows(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        """Number of ids in each row."""
        return np.diff(self.offsets)

    def row_of_value(self) -> np.ndarray:
        """The row index of each entry of `values`."""
        return np.repeat(np.arange(self.n_rows, dtype=np.int64), self.lengths())

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
        # dense-rank the ids so (row, rank) packs into one sortable int64 key; rows are already
        # sorted and ids sorted within rows, so the packed keys of `values` are sorted too
        vocabulary = np.unique(self.values)
        if self.n_rows * len(vocabulary) >= 2**62:
            raise ValueError("Csr.contains_pairs: rows x distinct ids too large to pack into int64 keys")
        value_keys = self.row_of_value() * len(vocabulary) + np.searchsorted(vocabulary, self.values)
        rank = np.searchsorted(vocabulary, ids)
        known = vocabulary[np.minimum(rank, len(vocabulary) - 1)] == ids
        keys = rows * len(vocabulary) + rank
        position = np.minimum(np.searchsorted(value_keys, keys), len(value_keys) - 1)
        return known & (value_keys[position] == keys)

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
