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
    """The latest value read per key, refreshed off the caller's thread once older than ``ttl``.

    A value is dated from when its read was asked for, so a key asked for every ``ttl`` is read
    every ``ttl``. A read that fails keeps the last value (dated anew: asked again after another
    ``ttl``). Keys nobody asked for in ``FORGET_AFTER_TTLS`` ttls are dropped (finished and deleted
    jobs)."""

    FORGET_AFTER_TTLS = 10

    def __init__(self, ttl: float, workers: int = 4) -> None:
        self.ttl = ttl
        self._workers = workers
        self._lock = threading.Lock()
        self._values: dict[Hashable, tuple[float, T | None]] = {}
        self._asked: dict[Hashable, float] = {}
        self._reading: set[Hashable] = set()
        self._pruned_at = time.monotonic()
        self._pool: ThreadPoolExecutor | None = None

    def latest(self, key: Hashable, load: Callable[[], T | None], on_change: Callable[[], None]) -> T | None:
        """The last value read for ``key`` (None before the first read ends), starting a fresh read
        when it is older than ``ttl``; ``on_change`` runs when a read brings a different value."""
        now = time.monotonic()
        with self._lock:
            self._prune(now)
            self._asked[key] = now
            kept = self._values.get(key)
            stale = kept is None or now - kept[0] >= self.ttl
            start = stale and key not in self._reading
            if start:
                self._reading.add(key)
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="galley-storage")
                pool = self._pool
        if start:
            pool.submit(self._read, key, load, on_change, now)
        return kept[1] if kept is not None else None

    def now(self, key: Hashable, load: Callable[[], T | None]) -> T | None:
        """Read ``key`` on this thread and keep the value (a reconcile that must not go on with an
        old one: the last read of a trainer that has just finished). A failed read raises."""
        asked = time.monotonic()
        value = load()
        with self._lock:
            self._values[key] = (asked, value)
            self._asked[key] = asked
        return value

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._values.pop(key, None)
            self._asked.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    def _prune(self, now: float) -> None:
        """Drop keys not asked for lately, at most once per ttl (under the lock)."""
        horizon = self.ttl * self.FORGET_AFTER_TTLS
        if now - self._pruned_at < self.ttl:
            return
        self._pruned_at = now
        for key in [k for k, asked in self._asked.items() if now - asked > horizon and k not in self._reading]:
            del self._asked[key]
            self._values.pop(key, None)

    def _read(self, key: Hashable, load: Callable[[], T | None], on_change: Callable[[], None],
              asked: float) -> None:
        try:
            value = load()
        except Exception as error:  # the store is down or slow: keep the last value, try at the next ask
            log.info("reading %s in the background failed (%s: %s); keeping the last value", key,
                     type(error).__name__, error)
            with self._lock:
                self._reading.discard(key)
                kept = self._values.get(key)
                if kept is not None:  # asked again after another ttl, not at once
                    self._values[key] = (asked, kept[1])
            return
        with self._lock:
            self._reading.discard(key)
            kept = self._values.get(key)
            if kept is not None and kept[0] > asked:
                return  # a newer read (``now``) came first: it stands
            changed = (kept[1] if kept is not None else None) != value
            self._values[key] = (asked, value)
        if changed:
            try:
                on_change()
            except Exception:
                log.exception("after reading %s in the background", key)

    def stop(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
