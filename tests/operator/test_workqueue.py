"""The operator's work queue: due times, moving and forgetting them, retries, one worker per key, and
the urgent lane ahead of the normal one."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from galley.operator.workqueue import Key, WorkQueue
from galley.testing.operator import eventually


def recording_queue(fail: set[Key] | None = None) -> tuple[WorkQueue, list[Key]]:
    ran: list[Key] = []
    lock = threading.Lock()

    def run(key: Key) -> None:
        with lock:
            ran.append(key)
        if fail and key in fail:
            fail.discard(key)
            raise RuntimeError("the API server said no")

    queue = WorkQueue(workers=1, retry_after=0.2)
    queue.start(run)
    return queue, ran


def test_keys_run_in_the_order_they_fall_due() -> None:
    queue, ran = recording_queue()
    try:
        queue.after(("onlineservices", "ns", "late"), 0.6)
        queue.after(("trainingjobs", "ns", "soon"), 0.1)
        eventually(lambda: len(ran) == 2, timeout=5, interval=0.05)
        assert ran == [("trainingjobs", "ns", "soon"), ("onlineservices", "ns", "late")]
    finally:
        queue.stop()


def test_an_earlier_time_moves_a_key_and_a_later_one_is_ignored() -> None:
    queue, ran = recording_queue()
    key: Key = ("onlineservices", "ns", "svc")
    try:
        queue.after(key, 30)
        queue.after(key, 0.1)  # earlier: moves it
        queue.after(key, 60)  # later: ignored
        eventually(lambda: ran, timeout=5, interval=0.05)
        time.sleep(0.3)
        assert ran == [key], "a key runs once per due time, however often it was asked for"
        assert queue.due_in(key) is None
    finally:
        queue.stop()


def test_a_forgotten_key_does_not_run() -> None:
    queue, ran = recording_queue()
    key: Key = ("models", "ns", "gone")
    try:
        queue.after(key, 0.2)
        queue.forget(key)
        queue.after(("models", "ns", "other"), 0.4)
        eventually(lambda: ran, timeout=5, interval=0.05)
        assert ran == [("models", "ns", "other")]
    finally:
        queue.stop()


def test_a_failed_reconcile_is_tried_again() -> None:
    key: Key = ("trainingjobs", "ns", "flaky")
    queue, ran = recording_queue(fail={key})
    try:
        queue.after(key, 0)
        eventually(lambda: len(ran) == 2, timeout=5, interval=0.05, message="the failed reconcile was not retried")
        assert ran == [key, key]
    finally:
        queue.stop()


def test_a_key_runs_on_one_worker_at_a_time_and_once_more_if_added_while_running() -> None:
    """client-go's work queue: with many workers, a key added ten times while its reconcile runs is
    not run beside it, and runs exactly once more afterwards, to see what changed meanwhile."""
    key: Key = ("onlineservices", "ns", "svc")
    running, overlapped, runs = 0, False, 0
    lock, release = threading.Lock(), threading.Event()

    def run(_: Key) -> None:
        nonlocal running, overlapped, runs
        with lock:
            running += 1
            runs += 1
            overlapped = overlapped or running > 1
            first = runs == 1
        if first:
            release.wait(5)  # the first run is slow; the key is added again meanwhile
        with lock:
            running -= 1

    queue = WorkQueue(workers=4)
    queue.start(run)
    try:
        queue.add(key, urgent=True)
        eventually(lambda: runs == 1, timeout=5, interval=0.01)
        for index in range(10):
            queue.add(key, urgent=index % 2 == 0)
            queue.after(key, 0)
            time.sleep(0.01)
        time.sleep(0.2)
        assert runs == 1 and not overlapped  # nobody ran it beside the first run
        release.set()
        eventually(lambda: runs == 2, timeout=5, interval=0.01)
        time.sleep(0.3)
        assert runs == 2 and not overlapped  # ten adds while it ran: one more run, not ten
        assert queue.busy() == 0 and queue.depth() == 0
    finally:
        release.set()
        queue.stop()


@contextlib.contextmanager
def held_worker() -> Iterator[tuple[WorkQueue, list[Key], threading.Event]]:
    """A one-worker queue whose worker is held by a first key until the gate opens, so that the
    lanes can be filled first; the keys run after it, in order."""
    ran: list[Key] = []
    gate = threading.Event()

    def run(key: Key) -> None:
        if key[2] == "gate":
            gate.wait(5)
        ran.append(key)

    queue = WorkQueue(workers=1)
    queue.start(run)
    try:
        queue.add(("models", "ns", "gate"))
        eventually(lambda: queue.busy() == 1, timeout=5, interval=0.01)
        yield queue, ran, gate
    finally:
        gate.set()
        queue.stop()


def test_urgent_keys_go_before_every_normal_key_and_a_waiting_key_can_be_promoted() -> None:
    """A burst of users' changes is not held up by the follow-ups of the children it made."""
    with held_worker() as (queue, ran, gate):
        follow_ups = [("trainingjobs", "ns", f"follow-up-{i}") for i in range(5)]
        for key in follow_ups:
            queue.add(key)
        created = [("onlineservices", "ns", f"created-{i}") for i in range(3)]
        for key in created:
            queue.add(key, urgent=True)
        queue.add(follow_ups[3], urgent=True)  # edited by a user while it waited: promoted, not run twice
        assert queue.depth() == 8
        gate.set()
        eventually(lambda: len(ran) == 9, timeout=5, interval=0.01)
        time.sleep(0.2)
        assert ran[1:] == [*created, follow_ups[3], *follow_ups[:3], follow_ups[4]]


def test_a_forgotten_key_leaves_its_lane_too() -> None:
    with held_worker() as (queue, ran, gate):
        queue.add(("models", "ns", "deleted"), urgent=True)
        queue.add(("models", "ns", "kept"))
        queue.forget(("models", "ns", "deleted"))
        gate.set()
        eventually(lambda: len(ran) == 2, timeout=5, interval=0.01)
        time.sleep(0.2)
        assert ran == [("models", "ns", "gate"), ("models", "ns", "kept")]


def test_a_stream_of_urgent_keys_holds_a_normal_key_back_seconds_at_most() -> None:
    """An autostop falling due while users keep changing resources faster than one worker takes
    them still runs, within the normal lane's longest wait."""
    from galley.operator.workqueue import MAX_NORMAL_WAIT_SECONDS

    ran: dict[Key, float] = {}

    def run(key: Key) -> None:
        ran.setdefault(key, time.monotonic())
        time.sleep(0.005)

    queue = WorkQueue(workers=1)
    queue.start(run)
    autostop: Key = ("onlineservices", "ns", "autostop")
    try:
        started = time.monotonic()
        queue.after(autostop, 0)
        index = 0
        while time.monotonic() - started < MAX_NORMAL_WAIT_SECONDS + 2 and autostop not in ran:
            for _ in range(5):  # 5 adds per ms: more than the worker takes
                queue.add(("trainingjobs", "ns", f"edit-{index}"), urgent=True)
                index += 1
            time.sleep(0.001)
        assert autostop in ran, "the normal lane waited as long as the urgent stream lasted"
        assert ran[autostop] - started <= MAX_NORMAL_WAIT_SECONDS + 1
    finally:
        queue.stop()


def test_a_worker_survives_a_run_that_raises_anything() -> None:
    runs: list[Key] = []
    key: Key = ("models", "ns", "exits")

    def run(k: Key) -> None:
        runs.append(k)
        if len(runs) == 1:
            raise SystemExit("a library called sys.exit")

    queue = WorkQueue(workers=1, retry_after=0.1)
    queue.start(run)
    try:
        queue.add(key)
        eventually(lambda: len(runs) == 2, timeout=5, interval=0.01, message="the worker died with the run")
        queue.add(("models", "ns", "next"))
        eventually(lambda: len(runs) == 3, timeout=5, interval=0.01)
    finally:
        queue.stop()
