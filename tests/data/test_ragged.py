"""The one ragged-array type and its constructors, against plain per-row Python lists."""

import numpy as np
import pytest

from ebr.data.csr import Csr, Ragged, offsets_from_lengths, rows_of_values


def random_rows(seed: int, n_rows: int = 30) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 9, rng.integers(0, 5)).tolist() for _ in range(n_rows)]


def flat(rows: list[list[int]]) -> np.ndarray:
    return np.array([value for row in rows for value in row], dtype=np.int64)


def as_lists(ragged: Ragged) -> list[list[int]]:
    return [ragged.values[ragged.offsets[i] : ragged.offsets[i + 1]].tolist() for i in range(ragged.n_rows)]


@pytest.mark.parametrize("seed", [0, 1])
def test_from_lengths_cuts_values_into_consecutive_rows(seed):
    rows = random_rows(seed)
    lengths = np.array([len(r) for r in rows])
    ragged = Ragged.from_lengths(lengths, flat(rows))
    assert as_lists(ragged) == rows
    assert ragged.offsets.dtype == np.int64
    assert ragged.lengths().tolist() == lengths.tolist()
    assert ragged.row_of_value().tolist() == [i for i, r in enumerate(rows) for _ in r]


def test_offsets_from_lengths_accepts_booleans_and_empty_and_rejects_negatives():
    assert offsets_from_lengths(np.array([True, False, True])).tolist() == [0, 1, 1, 2]
    assert offsets_from_lengths(np.zeros(0, np.int64)).tolist() == [0]
    assert rows_of_values(np.array([2, 0, 1])).tolist() == [0, 0, 2]
    with pytest.raises(ValueError, match=">= 0"):
        offsets_from_lengths(np.array([1, -1]))
    with pytest.raises(ValueError, match="integer"):
        offsets_from_lengths(np.array([1.5]))


@pytest.mark.parametrize("seed", [0, 1])
def test_from_rows_groups_pairs_by_row_keeping_their_order(seed):
    rng = np.random.default_rng(seed)
    rows, values = rng.integers(0, 12, 80), rng.integers(0, 50, 80)
    ragged = Ragged.from_rows(rows, values, 15)
    want = [[int(v) for r, v in zip(rows, values, strict=True) if r == row] for row in range(15)]
    assert as_lists(ragged) == want  # rows 12..14 are empty
    with pytest.raises(ValueError, match=r"row indices must be in \[0, 5\)"):
        Ragged.from_rows(rows, values, 5)


def test_take_gathers_rows_in_any_order_with_repeats():
    rows = random_rows(2)
    ragged = Ragged.from_lengths(np.array([len(r) for r in rows]), flat(rows))
    wanted = np.array([3, 0, 3, 29, 7])
    lengths, index = ragged.take(wanted)
    assert lengths.tolist() == [len(rows[i]) for i in wanted]
    assert ragged.values[index].tolist() == flat([rows[i] for i in wanted]).tolist()


def test_csr_is_the_ragged_type_with_sorted_distinct_rows():
    csr = Csr.from_pairs(np.array([1, 0, 1, 1]), np.array([7, 3, 2, 7]), 3)
    assert isinstance(csr, Ragged)
    assert as_lists(csr) == [[3], [2, 7], []]
    Ragged(np.array([0, 2]), np.array([5, 5]))  # a plain ragged row may repeat
    with pytest.raises(ValueError, match="strictly increasing"):
        Csr(np.array([0, 2]), np.array([5, 5]))
    with pytest.raises(ValueError, match=r"Csr\.offsets must start at 0"):
        Csr(np.array([1, 2]), np.array([5, 6]))
