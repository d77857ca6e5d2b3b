"""Progress records are read off the work queue's workers: a reconcile takes the last record read
and never waits for the store; a fresh read that brings a different record reconciles the owner."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

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


def test_a_key_asked_for_every_ttl_is_read_every_ttl() -> None:
    """Values are dated from when their read was asked for: the reconcile that asks every interval
    gets a fresh read every interval, not every other one."""
    reads = BackgroundReads[int](ttl=0.2, workers=1)
    count = [0]

    def slow_read() -> int:
        time.sleep(0.05)
        count[0] += 1
        return count[0]

    try:
        for _ in range(10):
            reads.latest("job", slow_read, lambda: None)
            time.sleep(0.2)
        assert count[0] >= 9, count[0]
    finally:
        reads.stop()


def test_keys_nobody_asks_for_are_forgotten() -> None:
    reads = BackgroundReads[int](ttl=0.01, workers=1)
    try:
        for index in range(50):
            reads.now(("finished", index), lambda: 1)
        time.sleep(0.01 * reads.FORGET_AFTER_TTLS + 0.05)
        reads.latest("running", lambda: 2, lambda: None)
        assert len(reads) <= 1
    finally:
        reads.stop()


def test_a_store_that_cannot_be_read_keeps_the_record_and_the_last_read_raises(tmp_path: Path,
                                                                              s3: Any) -> None:
    """The operator's reader tells "no record yet" from "the store does not answer": an outage keeps
    the last record (the Running condition keeps its epoch), and a finished trainer's last read
    raises, so the job is tried again instead of finishing without its metrics."""
    from galley import storage
    from galley.control.progress import progress_uri, read_progress

    output = "s3://progress-bucket/job/"
    s3.create_bucket(Bucket="progress-bucket")
    assert read_progress(output, strict=True) is None  # nothing written yet: no record, no error
    storage.write_text(progress_uri(output), '{"epoch": 3, "epochs": 10}')
    reads = BackgroundReads[dict[str, Any]](ttl=0.05, workers=1)
    changed: list[int] = []
    try:
        assert reads.now("job", lambda: read_progress(output, strict=True)) == {"epoch": 3, "epochs": 10}

        def down() -> dict[str, Any] | None:
            raise storage.StorageUnavailable("the store does not answer")

        time.sleep(0.06)
        assert reads.latest("job", down, lambda: changed.append(1)) == {"epoch": 3, "epochs": 10}
        time.sleep(0.1)
        assert reads.latest("job", down, lambda: changed.append(1)) == {"epoch": 3, "epochs": 10}
        assert changed == []
        with pytest.raises(storage.StorageUnavailable):
            reads.now("job", down)
    finally:
        reads.stop()
