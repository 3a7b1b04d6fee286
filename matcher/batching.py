"""Micro-batching: concurrent searches on one index share one FAISS call.

FAISS answers a batch of queries several times faster per query than the same queries one by one
(one pass over the vectors, matrix-matrix instead of matrix-vector work).  No timer: a lone
request runs at once; requests that arrive while a search is running queue up and the next
leader runs them together, so batching only happens when there is load, and adds no wait.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

R = TypeVar("R")


@dataclass(eq=False)
class _Slot(Generic[R]):
    query: np.ndarray
    top: int
    ready: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    result: R | None = None
    error: BaseException | None = None


class MicroBatcher(Generic[R]):
    """Runs ``search(queries[n, d], top) -> list[R]`` for many threads, batching while busy."""

    def __init__(self, search: Callable[[np.ndarray, int], Sequence[R]], trim: Callable[[R, int], R], max_batch: int = 32) -> None:
        self._search = search
        self._trim = trim
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Slot[R]] = []
        self._busy = False
        self.batches = 0
        self.queries = 0

    def search(self, query: np.ndarray, top: int) -> R:
        slot: _Slot[R] = _Slot(query, top)
        with self._lock:
            self._queue.append(slot)
            if not self._busy:
                self._busy = slot.lead = True
        if not slot.lead:
            slot.ready.wait()
        if slot.lead and slot.result is None and slot.error is None:
            self._lead()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _lead(self) -> None:
        """Run one batch (which includes our own slot), then hand leadership to the next in line."""
        with self._lock:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
        try:
            top = max(slot.top for slot in batch)
            results = self._search(np.stack([slot.query for slot in batch]), top)
            for slot, result in zip(batch, results):
                slot.result = self._trim(result, slot.top)
        except BaseException as error:  # every waiter learns of the failure
            for slot in batch:
                slot.error = error
        with self._lock:
            self.batches += 1
            self.queries += len(batch)
            successor = self._queue[0] if self._queue else None
            if successor is None:
                self._busy = False
            else:
                successor.lead = True
        for slot in batch:
            slot.ready.set()
        if successor is not None:
            successor.ready.set()
