"""Storage reads that no reconcile waits for: a running trainer's progress record.

A running trainer's record is read again every interval, for as long as it runs, for every job.
Read inside the reconcile, a slow or unreachable store held every work queue worker: on the
benchmark's 1,000 + 1,000 burst, 30 of 32 workers sat in name resolution for a store, and a new
resource's first reconcile waited 3.5 s at the median behind them. Here the reconcile takes the
last record read (possibly a little old, never a step back to nothing) and asks for a fresh one on
a small pool of its own; when the record it brings differs, the owner is reconciled again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

log = logging.getLogger("galley.operator")
T = TypeVar("T")


class BackgroundReads(Generic[T]):
    """The latest value read per key, refreshed off the caller's thread once older than ``ttl``."""

    def __init__(self, ttl: float, workers: int = 4) -> None:
        self.ttl = ttl
        self._workers = workers
        self._lock = threading.Lock()
        self._values: dict[Hashable, tuple[float, T | None]] = {}
        self._reading: set[Hashable] = set()
        self._pool: ThreadPoolExecutor | None = None

    def latest(self, key: Hashable, load: Callable[[], T | None], on_change: Callable[[], None]) -> T | None:
        """The last value read for ``key`` (None before the first read ends), starting a fresh read
        when it is older than ``ttl``; ``on_change`` runs when a read brings a different value."""
        with self._lock:
            kept = self._values.get(key)
            stale = kept is None or time.monotonic() - kept[0] >= self.ttl
            start = stale and key not in self._reading
            if start:
                self._reading.add(key)
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="galley-storage")
                pool = self._pool
        if start:
            pool.submit(self._read, key, load, on_change)
        return kept[1] if kept is not None else None

    def now(self, key: Hashable, load: Callable[[], T | None]) -> T | None:
        """Read ``key`` on this thread and keep the value (a reconcile that must not go on with an
        old one: the last read of a trainer that has just finished)."""
        value = load()
        with self._lock:
            self._values[key] = (time.monotonic(), value)
        return value

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._values.pop(key, None)

    def _read(self, key: Hashable, load: Callable[[], T | None], on_change: Callable[[], None]) -> None:
        changed = False
        try:
            value = load()
        except Exception as error:  # the store is down or slow: keep the last value, try at the next ask
            log.info("reading %s in the background failed (%s: %s); keeping the last value", key,
                     type(error).__name__, error)
            with self._lock:
                kept = self._values.get(key)
                if kept is not None:  # asked again after another ttl, not at once
                    self._values[key] = (time.monotonic(), kept[1])
            return
        finally:
            with self._lock:
                self._reading.discard(key)
        with self._lock:
            kept = self._values.get(key)
            changed = (kept[1] if kept is not None else None) != value
            self._values[key] = (time.monotonic(), value)
        if changed:
            on_change()

    def stop(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
