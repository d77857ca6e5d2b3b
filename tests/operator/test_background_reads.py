"""Progress records are read off the work queue's workers: a reconcile takes the last record read
and never waits for the store; a fresh read that brings a different record reconciles the owner."""

from __future__ import annotations

import threading
import time

from galley.operator.background import BackgroundReads
from galley.testing.operator import eventually


def test_a_hanging_store_does_not_hold_the_caller() -> None:
    reads = BackgroundReads[dict[str, int]](ttl=60, workers=1)
    release = threading.Event()

    def hanging() -> dict[str, int]:
        release.wait(10)
        return {"epoch": 1}

    changed: list[str] = []
    try:
        started = time.monotonic()
        for _ in range(5):  # five reconciles while the store hangs: none waits, one read is made
            assert reads.latest("job", hanging, lambda: changed.append("job")) is None
        assert time.monotonic() - started < 0.5
        release.set()
        eventually(lambda: changed == ["job"], timeout=5, interval=0.01, message="the owner was not requeued")
        assert reads.latest("job", hanging, lambda: changed.append("again")) == {"epoch": 1}
    finally:
        release.set()
        reads.stop()


def test_an_old_record_is_kept_while_a_fresh_one_is_read_and_the_same_record_requeues_nothing() -> None:
    reads = BackgroundReads[dict[str, int]](ttl=0.05, workers=1)
    records = iter([{"epoch": 1}, {"epoch": 1}, {"epoch": 2}])
    changed: list[int] = []
    try:
        reads.latest("job", lambda: next(records), lambda: changed.append(1))
        eventually(lambda: changed == [1], timeout=5, interval=0.01)
        time.sleep(0.06)
        assert reads.latest("job", lambda: next(records), lambda: changed.append(2)) == {"epoch": 1}
        time.sleep(0.1)
        assert changed == [1], "the same record again is no change"
        time.sleep(0.06)
        assert reads.latest("job", lambda: next(records), lambda: changed.append(3)) == {"epoch": 1}
        eventually(lambda: changed == [1, 3], timeout=5, interval=0.01)
    finally:
        reads.stop()


def test_a_failed_read_keeps_the_last_record() -> None:
    reads = BackgroundReads[dict[str, int]](ttl=0.05, workers=1)
    try:
        assert reads.now("job", lambda: {"epoch": 3}) == {"epoch": 3}
        time.sleep(0.06)

        def down() -> dict[str, int]:
            raise ConnectionError("the store is down")

        assert reads.latest("job", down, lambda: None) == {"epoch": 3}
        time.sleep(0.1)
        assert reads.latest("job", down, lambda: None) == {"epoch": 3}
    finally:
        reads.stop()
