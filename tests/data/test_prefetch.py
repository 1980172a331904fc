"""Prefetched: the same batches in the same order, errors re-raised, no thread left behind."""

import threading

import pytest
from torch.utils.data import IterableDataset

from ebr.data.prefetch import Prefetched


class _Numbers(IterableDataset):
    def __init__(self, n: int, fail_at: int | None = None) -> None:
        super().__init__()
        self.n, self.fail_at, self.passes = n, fail_at, 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        self.passes += 1
        for i in range(self.n):
            if i == self.fail_at:
                raise RuntimeError(f"bad row {i}")
            yield (self.passes, i)


def _prefetch_threads() -> int:
    return sum(t.name == "ebr-batch-prefetch" for t in threading.enumerate())


def test_prefetched_yields_the_wrapped_datasets_items_in_order_pass_after_pass():
    plain, wrapped = _Numbers(7), Prefetched(_Numbers(7), depth=2)
    assert len(wrapped) == 7
    for _ in range(2):  # the wrapped dataset's own pass counter advances as it would unwrapped
        assert list(wrapped) == list(plain)


def test_an_error_in_the_background_is_raised_in_the_consumer():
    with pytest.raises(RuntimeError, match="bad row 3"):
        list(Prefetched(_Numbers(10, fail_at=3), depth=1))
    assert _prefetch_threads() == 0


def test_a_consumer_that_stops_early_leaves_no_thread_behind():
    iterator = iter(Prefetched(_Numbers(1000), depth=2))
    assert [next(iterator) for _ in range(3)] == [(1, 0), (1, 1), (1, 2)]
    iterator.close()
    assert _prefetch_threads() == 0


def test_a_depth_below_one_is_refused():
    with pytest.raises(ValueError, match="prefetch_batches must be at least 1"):
        Prefetched(_Numbers(3), depth=0)
