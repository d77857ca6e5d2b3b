"""Who looks again when a resource they read changes: an OnlineService when its Model appears or its
status moves, a Model when its TrainingJob does, found through the operator's own record of who
reads whom (no scan of every resource), and kept up to date when a spec points elsewhere.

The kopf event handlers are called as kopf calls them, with a work queue whose runs are recorded."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import kopf
import pytest

from galley.operator import handlers
from galley.operator import runtime as operator_runtime
from galley.operator.runtime import Runtime
from galley.operator.workqueue import Key
from galley.testing.operator import eventually


def body(kind: str, name: str, spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    raw: dict[str, Any] = {"apiVersion": "galley.dev/v1alpha1", "kind": kind, "spec": spec,
                           "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "generation": 1}}
    if status is not None:
        raw["status"] = status
    return raw


@pytest.fixture
def recorded() -> Iterator[tuple[kopf.Memo, list[Key]]]:
    runtime = Runtime.create()
    ran: list[Key] = []
    lock = threading.Lock()

    def run(key: Key) -> None:
        with lock:
            ran.append(key)

    runtime.queue.start(run)
    memo = kopf.Memo()
    memo[operator_runtime.MEMO_KEY] = runtime
    try:
        yield memo, ran
    finally:
        runtime.queue.stop()


def event(plural: str, memo: kopf.Memo, kind: str | None, raw: dict[str, Any]) -> None:
    handlers._on_event(plural)(type=kind, body=kopf.Body(raw), memo=memo)  # type: ignore[arg-type]


SERVICE: Key = ("onlineservices", "ns", "svc")


def test_a_model_seen_for_the_first_time_brings_its_services_back(recorded: tuple[kopf.Memo, list[Key]]) -> None:
    """A service reconciled before the Model reached the watch cache (a restart lists both at once)
    looks again when the Model is first seen, not at its next resync."""
    memo, ran = recorded
    event("onlineservices", memo, "ADDED", body("OnlineService", "svc", {"model": "food"}))
    eventually(lambda: ran == [SERVICE], timeout=5, interval=0.01)
    event("models", memo, "ADDED", body("Model", "food", {"source": {"uri": "s3://m/"}}, {"phase": "Ready"}))
    eventually(lambda: sorted(ran[1:]) == [("models", "ns", "food"), SERVICE], timeout=5, interval=0.01)


def test_a_service_that_now_serves_another_model_follows_that_one(recorded: tuple[kopf.Memo, list[Key]]) -> None:
    memo, ran = recorded
    event("models", memo, "ADDED", body("Model", "old", {}, {"phase": "Ready"}))
    event("models", memo, "ADDED", body("Model", "new", {}, {"phase": "Ready"}))
    event("onlineservices", memo, "ADDED", body("OnlineService", "svc", {"model": "old"}))
    event("onlineservices", memo, "MODIFIED", body("OnlineService", "svc", {"model": "new"}))
    eventually(lambda: SERVICE in ran, timeout=5, interval=0.01)
    del ran[:]
    event("models", memo, "MODIFIED", body("Model", "old", {}, {"phase": "NotReady"}))  # status only
    event("models", memo, "MODIFIED", body("Model", "new", {}, {"phase": "NotReady"}))
    eventually(lambda: ran == [SERVICE], timeout=5, interval=0.01)
    runtime = operator_runtime.of(memo)
    assert runtime.seen.dependents == {("models", "ns", "new"): {SERVICE}}
    event("onlineservices", memo, "DELETED", body("OnlineService", "svc", {"model": "new"}))
    assert runtime.seen.dependents == {} and runtime.seen.depends_on == {}


def test_a_deleted_training_job_brings_its_models_back(recorded: tuple[kopf.Memo, list[Key]]) -> None:
    memo, ran = recorded
    event("trainingjobs", memo, "ADDED", body("TrainingJob", "job", {}, {"phase": "Succeeded"}))
    event("models", memo, "ADDED", body("Model", "food", {"source": {"trainingJob": "job"}}))
    eventually(lambda: ("models", "ns", "food") in ran, timeout=5, interval=0.01)
    del ran[:]
    event("trainingjobs", memo, "DELETED", body("TrainingJob", "job", {}, {"phase": "Succeeded"}))
    eventually(lambda: ran == [("models", "ns", "food")], timeout=5, interval=0.01)


def test_a_re_created_objects_body_survives_its_predecessors_late_deletion(
        recorded: tuple[kopf.Memo, list[Key]]) -> None:
    """kopf handles each uid's events on its own, so the new object's ADDED can come first: the old
    one's DELETED must not drop the new one's body or its place in the queue."""
    memo, ran = recorded
    old = body("Model", "food", {"source": {"uri": "s3://m/"}})
    old["metadata"]["uid"], old["metadata"]["resourceVersion"] = "uid-old", "100"
    new = body("Model", "food", {"source": {"uri": "s3://m2/"}})
    new["metadata"]["uid"], new["metadata"]["resourceVersion"] = "uid-new", "200"
    runtime = operator_runtime.of(memo)
    runtime.queue.stop()  # hold the keys in the queue, as busy workers would
    event("models", memo, "ADDED", new)
    late = body("Model", "food", {"source": {"uri": "s3://m/"}})
    late["metadata"].update(uid="uid-old", resourceVersion="150", deletionTimestamp="2026-12-04T00:00:00Z")
    event("models", memo, "MODIFIED", late)
    event("models", memo, "DELETED", late)
    assert runtime.seen.bodies[("models", "ns", "food")][0]["metadata"]["uid"] == "uid-new"
    assert runtime.queue.depth() == 1
    runtime.queue.start(lambda key: ran.append(key))
    eventually(lambda: ran == [("models", "ns", "food")], timeout=5, interval=0.01)


def test_a_listing_of_unchanged_resources_queues_nothing(recorded: tuple[kopf.Memo, list[Key]]) -> None:
    """kopf lists everything again when a watch stream comes back after a gap: the resources whose
    spec is as it was need no reconcile, one whose spec moved does."""
    memo, ran = recorded
    for index in range(3):
        event("onlineservices", memo, None, body("OnlineService", f"svc-{index}", {"model": "food"}))
    eventually(lambda: len(ran) == 3, timeout=5, interval=0.01)
    del ran[:]
    for index in range(3):
        model = "food" if index else "other"
        listed = body("OnlineService", f"svc-{index}", {"model": model}, {"phase": "Running"})
        event("onlineservices", memo, None, listed)
    eventually(lambda: ran == [("onlineservices", "ns", "svc-0")], timeout=5, interval=0.01)
    time.sleep(0.2)
    assert ran == [("onlineservices", "ns", "svc-0")]
