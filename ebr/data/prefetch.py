"""Training batches built ahead of the step that needs them, in a background thread.

Building a batch is numpy gathers and tensor assembly; a CPU training step spends most of its time
in torch kernels that release the GIL, so one thread building the next batches overlaps the two
(scripts/bench/pipeline.py measures the effect). The thread runs the wrapped dataset's own
iterator, so the batches and their order are exactly those of the unwrapped dataset.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

from torch.utils.data import IterableDataset

_DONE = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Prefetched(IterableDataset):
    """Iterates `dataset` in a background thread, at most `depth` batches ahead.

    Args:
        dataset: any iterable dataset with a length (e.g. EngagementBatches).
        depth: batches built ahead (at least 1).
    """

    def __init__(self, dataset: IterableDataset, depth: int = 2) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"train.prefetch_batches must be at least 1 to prefetch, got {depth}")
        self.dataset = dataset
        self.depth = depth

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        ready: queue.Queue = queue.Queue(maxsize=self.depth)
        stop = threading.Event()

        def offer(item: Any) -> bool:
            """Queue `item` unless the consumer stopped first; whether it was queued."""
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for batch in self.dataset:
                    if not offer(batch):
                        return
                item: Any = _DONE
            except BaseException as error:  # re-raised in the consumer, with its traceback
                item = _Failure(error)
            offer(item)

        worker = threading.Thread(target=produce, name="ebr-batch-prefetch", daemon=True)
        worker.start()
        try:
            while True:
                item = ready.get()
                if item is _DONE:
                    return
                if isinstance(item, _Failure):
                    raise item.error
                yield item
        finally:
            # a consumer that stops early (max_steps, an exception) must not leave the thread
            # blocked on a full queue
            stop.set()
            worker.join()
