"""A small batching queue: concurrent requests of one kind run as one model batch.

Request threads call `submit(key, item)` and block until their own result is ready. One background
thread takes the oldest waiting item, gathers more items with the same key (the same endpoint and
gate factor) that arrive within `max_wait_s`, at most `max_batch` in all, and runs
`run_batch(key, items)`, which returns one result per item, in order; a result that is an exception
is raised in that item's caller only. Items of another key wait for a later batch, in arrival order.

With the model busy, requests queue up meanwhile and the next batch takes them all, so the wait
costs latency only when the server is idle: a few ms against a model pass of tens of ms.
"""
from __future__ import annotations

import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable


@dataclass(frozen=True)
class BatchSettings:
    max_batch: int = 8  # items per model batch
    max_wait_ms: float = 3.0  # how long the first item of a batch waits for company


@dataclass
class _Item:
    key: Hashable
    value: Any
    future: Future = field(default_factory=Future)


_STOP = object()


class Batcher:
    """Runs `run_batch(key, items) -> results` on batches of submitted items (see the module docstring)."""

    def __init__(self, run_batch: Callable[[Hashable, list], list], settings: BatchSettings = BatchSettings()) -> None:
        if settings.max_batch < 1 or settings.max_wait_ms < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait_ms >= 0, got {settings}")
        self.run_batch = run_batch
        self.settings = settings
        self._queue: queue.Queue = queue.Queue()
        self._held: deque[_Item] = deque()  # taken from the queue, waiting for a batch of their key
        self._thread = threading.Thread(target=self._loop, name="steervit-batcher", daemon=True)
        self._thread.start()
        self.batch_sizes: list[int] = []  # of every batch run, for benches and tests

    def submit(self, key: Hashable, value: Any) -> Any:
        """Queue `value`, wait for its batch, return its result (or raise its exception)."""
        if not self._thread.is_alive():
            raise RuntimeError("the batcher is closed")
        item = _Item(key, value)
        self._queue.put(item)
        return item.future.result()

    def close(self) -> None:
        """Stop the thread once the items already queued have run."""
        self._queue.put(_STOP)
        self._thread.join()

    def _loop(self) -> None:
        while True:
            batch = self._gather()
            if batch is None:
                return
            try:
                results = self.run_batch(batch[0].key, [item.value for item in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"run_batch gave {len(results)} results for {len(batch)} items")
            except BaseException as err:  # noqa: BLE001 - every caller of the batch hears of it
                results = [err] * len(batch)
            self.batch_sizes.append(len(batch))
            for item, result in zip(batch, results):
                if isinstance(result, BaseException):
                    item.future.set_exception(result)
                else:
                    item.future.set_result(result)

    def _gather(self) -> list[_Item] | None:
        """The next batch: the oldest item and those of its key, waiting at most `max_wait_ms` for more."""
        first = self._held.popleft() if self._held else self._queue.get()
        if first is _STOP:
            return None
        batch, limit = [first], self.settings.max_batch
        for item in list(self._held):
            if len(batch) < limit and item.key == first.key:
                self._held.remove(item)
                batch.append(item)
        deadline = time.monotonic() + self.settings.max_wait_ms / 1000
        while len(batch) < limit:
            try:
                item = self._queue.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                break
            if item is _STOP:
                self._queue.put(_STOP)  # after this batch
                break
            (batch if item.key == first.key else self._held).append(item)
        return batch
