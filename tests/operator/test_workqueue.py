"""The operator's scheduler: due times, moving them, forgetting them, and retrying a failed reconcile."""

from __future__ import annotations

import threading
import time

from galley.operator.scheduler import Key, Scheduler
from galley.testing.operator import eventually


def recording_scheduler(fail: set[Key] | None = None) -> tuple[Scheduler, list[Key]]:
    ran: list[Key] = []
    lock = threading.Lock()

    def run(key: Key) -> None:
        with lock:
            ran.append(key)
        if fail and key in fail:
            fail.discard(key)
            raise RuntimeError("the API server said no")

    scheduler = Scheduler(workers=1, retry_after=0.2)
    scheduler.start(run)
    return scheduler, ran


def test_keys_run_in_the_order_they_fall_due() -> None:
    scheduler, ran = recording_scheduler()
    try:
        scheduler.after(("onlineservices", "ns", "late"), 0.6)
        scheduler.after(("trainingjobs", "ns", "soon"), 0.1)
        eventually(lambda: len(ran) == 2, timeout=5, interval=0.05)
        assert ran == [("trainingjobs", "ns", "soon"), ("onlineservices", "ns", "late")]
    finally:
        scheduler.stop()


def test_an_earlier_time_moves_a_key_and_a_later_one_is_ignored() -> None:
    scheduler, ran = recording_scheduler()
    key: Key = ("onlineservices", "ns", "svc")
    try:
        scheduler.after(key, 30)
        scheduler.after(key, 0.1)  # earlier: moves it
        scheduler.after(key, 60)  # later: ignored
        eventually(lambda: ran, timeout=5, interval=0.05)
        time.sleep(0.3)
        assert ran == [key], "a key runs once per due time, however often it was asked for"
        assert scheduler.due_in(key) is None
    finally:
        scheduler.stop()


def test_a_forgotten_key_does_not_run() -> None:
    scheduler, ran = recording_scheduler()
    key: Key = ("models", "ns", "gone")
    try:
        scheduler.after(key, 0.2)
        scheduler.forget(key)
        scheduler.after(("models", "ns", "other"), 0.4)
        eventually(lambda: ran, timeout=5, interval=0.05)
        assert ran == [("models", "ns", "other")]
    finally:
        scheduler.stop()


def test_a_failed_reconcile_is_tried_again() -> None:
    key: Key = ("trainingjobs", "ns", "flaky")
    scheduler, ran = recording_scheduler(fail={key})
    try:
        scheduler.after(key, 0)
        eventually(lambda: len(ran) == 2, timeout=5, interval=0.05, message="the failed reconcile was not retried")
        assert ran == [key, key]
    finally:
        scheduler.stop()
