"""Reconciles that fall due later: "look at this resource again at time T".

kopf's per-object timers would do this, but kopf puts a finalizer on every resource that has one
(it must stop the timer before the resource goes): two extra writes per new resource, and a
resource that cannot be deleted while the operator is down. Galley needs less than a timer: a
reconcile when an autostop falls due, when a child changed, or when a running trainer's progress
record is worth reading again. One thread keeps the due times; a small pool runs the reconciles.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

Key = tuple[str, str, str]
"""(plural, namespace, name) of a Galley resource."""
log = logging.getLogger("galley.operator")


class Scheduler:
    """Due times per resource; asking again for an earlier time moves it, a later one is ignored."""

    def __init__(self, workers: int = 4, retry_after: float = 10.0) -> None:
        self._run: Callable[[Key], None] = lambda key: None
        self._retry_after = retry_after
        self._workers = workers
        self._due: dict[Key, float] = {}
        self._heap: list[tuple[float, Key]] = []
        self._condition = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    def after(self, key: Key, seconds: float) -> None:
        when = time.monotonic() + max(0.0, seconds)
        with self._condition:
            current = self._due.get(key)
            if current is not None and current <= when:
                return
            self._due[key] = when
            heapq.heappush(self._heap, (when, key))
            self._condition.notify()

    def requeue_owner(self, plural: str, namespace: str | None, name: str) -> None:
        """A child changed: reconcile its owner soon (one reconcile for a burst of child events)."""
        self.after((plural, namespace or "default", name), CHILD_SETTLE_SECONDS)

    def forget(self, key: Key) -> None:
        with self._condition:
            self._due.pop(key, None)

    def due_in(self, key: Key) -> float | None:
        """Seconds until ``key`` is due, or None when nothing is scheduled for it."""
        with self._condition:
            when = self._due.get(key)
        return None if when is None else when - time.monotonic()

    def start(self, run: Callable[[Key], None]) -> None:
        """Run ``run(key)`` for each key as it falls due (due times set before now count too)."""
        if self._thread is not None:
            return
        self._run = run
        self._stopping = False
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="galley-requeue")
        self._thread = threading.Thread(target=self._loop, name="galley-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _next_due(self) -> Key | None:
        """Wait for the next due key; None when stopping."""
        with self._condition:
            while not self._stopping:
                while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
                    heapq.heappop(self._heap)  # moved or forgotten since it was pushed
                now = time.monotonic()
                if self._heap and self._heap[0][0] <= now:
                    _, key = heapq.heappop(self._heap)
                    del self._due[key]
                    return key
                self._condition.wait(timeout=self._heap[0][0] - now if self._heap else None)
            return None

    def _loop(self) -> None:
        while (key := self._next_due()) is not None:
            assert self._pool is not None
            self._pool.submit(self._run_one, key)

    def _run_one(self, key: Key) -> None:
        try:
            self._run(key)
        except Exception:
            log.exception("reconciling %s/%s %s failed; trying again in %.0fs", *key, self._retry_after)
            self.after(key, self._retry_after)


CHILD_SETTLE_SECONDS = 0.5
"""A child's events are answered by one reconcile of its owner this long after the first."""
