"""Writing off the compute thread: a bounded queue drained by one writer thread.

``PartsSink`` walks this shard's pending parts in order, opening one ``PartWriter`` at a time
(the store allows one writer per part) and closing it (marking it complete) once its last
item is in. ``BackgroundWriter`` runs any such sink in a thread behind a bounded queue, so the
model only waits on disk when the queue is full (that wait is timed: ``blocked_seconds``).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from audioret.store import FeatureStore, PartWriter, StoreError


class PartsSink:
    """Items of ``parts`` (in order, resuming where each part's record says) -> the store."""

    def __init__(self, store: FeatureStore, split: str, kind: str, parts: Sequence[int]) -> None:
        self.store, self.split, self.kind = store, split, kind
        plan = store.plan_of(split, kind)
        self._ranges = [(p, *plan.parts[p]) for p in parts]   # (part, start, end)
        self._k = -1
        self._writer: PartWriter | None = None
        self._first = 0        # first item of the open part not yet durable (earlier ones: skipped)
        self.failures: dict[int, str] = {}
        self.items_written = 0

    def pending_parts(self) -> list[tuple[int, int, int, int]]:
        """(part, start, first pending item, end) of each unfinished part, in order."""
        status = self.store.status(self.split, self.kind)
        return [(p, a, a + status.parts[p].items_done, b) for p, a, b in self._ranges
                if not status.parts[p].complete]

    def _advance_to(self, index: int) -> PartWriter:
        while self._writer is None or index >= self._ranges[self._k][2]:
            self._close_current()
            self._k += 1
            if self._k >= len(self._ranges):
                raise StoreError(f"item {index} is outside this shard's parts of {self.split}/{self.kind}")
            self._writer = self.store.writer(self.split, self.kind, self._ranges[self._k][0])
            self._first = self._ranges[self._k][1] + self._writer.items_done
        return self._writer

    def _close_current(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def put(self, index: int, arrays: dict[str, Any], note: Any = None) -> None:
        """Store item ``index`` (``note``: kept with it in the part record, e.g. its source's size and
        mtime); items already durable (a resumed part's prefix, recomputed so batches match an
        uninterrupted run) are skipped."""
        w = self._advance_to(index)
        if index < self._first or w.complete:
            return
        if note is not None:
            w.note(index, note)
        try:
            w.put(index, **arrays)
        except StoreError as err:  # e.g. non-finite features: record, never write garbage
            self.fail(index, f"not stored: {err}")
            return
        self.items_written += 1

    def fail(self, index: int, reason: str, note: Any = None) -> None:
        w = self._advance_to(index)
        if index < self._first or w.complete:
            return
        if note is not None:
            w.note(index, note)
        w.fail(index, reason)
        self.failures[index] = reason
        self.items_written += 1

    def close(self) -> None:
        """Close the open part and every later (already finished or empty) part."""
        self._close_current()
        while self._k + 1 < len(self._ranges):
            self._k += 1
            self.store.writer(self.split, self.kind, self._ranges[self._k][0]).close()

    def abort(self) -> None:
        """Keep what is durable; mark nothing complete (the context-manager error path)."""
        if self._writer is not None:
            self._writer.__exit__(RuntimeError, None, None)
            self._writer = None


_STOP = object()


class BackgroundWriter:
    """Runs ``fn(*args)`` jobs in one thread, in order, behind a queue of ``maxsize`` jobs."""

    def __init__(self, maxsize: int, name: str = "extract-writer") -> None:
        self._q: queue.Queue = queue.Queue(maxsize=max(1, maxsize))
        self._error: BaseException | None = None
        self.busy_seconds = 0.0      # time the thread spent writing
        self.blocked_seconds = 0.0   # time the producer waited for a free queue slot
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            job = self._q.get()
            if job is _STOP:
                return
            if self._error is not None:
                continue  # drain without working after a failure
            fn, args = job
            t0 = time.perf_counter()
            try:
                fn(*args)
            except BaseException as err:  # surfaced in submit()/close()
                self._error = err
            self.busy_seconds += time.perf_counter() - t0

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self._raise()
        t0 = time.perf_counter()
        self._q.put((fn, args))
        self.blocked_seconds += time.perf_counter() - t0

    def close(self) -> None:
        """Wait for every queued job; re-raise the first error of the thread."""
        self._q.put(_STOP)
        self._thread.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"background writer failed: {self._error}") from self._error
