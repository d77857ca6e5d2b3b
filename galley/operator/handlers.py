"""kopf wiring: level-triggered event handlers, child events, and the scheduler.

Every watch event of a Galley resource runs its reconcile (:mod:`galley.operator.reconcile`) unless
only its status moved (the reconcile's own write coming back). A change of a child (Job, Pod,
Deployment) and a due time (autostop, the next look at a running trainer's progress) run the same
reconcile from the scheduler, with the resource as the last event showed it. There are no kopf
timers and no change-detecting handlers, so kopf puts no finalizer and no state on the resources:
they can be deleted while the operator is down, and a restarted operator reconciles all it lists.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, cast

import kopf

from galley.api.meta import GROUP, RECONCILE_REQUEST, VERSION
from galley.operator import indexes as _indexes  # noqa: F401  (registers the watch caches)
from galley.operator import kube
from galley.operator.indexes import watch_only_children
from galley.operator.reconcile import Next, reconcile_model, reconcile_online_service, reconcile_training_job
from galley.operator.scheduler import SCHEDULER, Key

log = logging.getLogger("galley.operator")
Reconcile = Callable[[kopf.Body, kopf.Patch, Mapping[str, Any]], Next]
RECONCILERS: dict[str, Reconcile] = {
    "trainingjobs": reconcile_training_job, "models": reconcile_model, "onlineservices": reconcile_online_service,
}
DEPENDENTS = {"trainingjobs": ("models", ("spec", "source", "trainingJob")),
              "models": ("onlineservices", ("spec", "model"))}
"""Whose status another kind reads: when a TrainingJob's status changes its Models look again, and so on."""


class _Seen:
    """The latest body of every Galley resource, and kopf's context and indexes to reconcile it in."""

    bodies: ClassVar[dict[Key, tuple[dict[str, Any], contextvars.Context]]] = {}
    indexes: ClassVar[Mapping[str, Any]] = {}
    lock: ClassVar[threading.Lock] = threading.Lock()
    running: ClassVar[dict[Key, threading.Lock]] = {}
    written: ClassVar[dict[Key, tuple[float, str, dict[str, Any]]]] = {}
    """Status fields this operator wrote lately, per resource: (when, uid, fields)."""


WRITES_TRUSTED_SECONDS = 5.0
"""How long a status write is taken as done before its watch event shows it."""


def _as_written(key: Key, raw: dict[str, Any]) -> kopf.Body:
    """The body with this operator's recent status writes laid over it.

    The cached body can lag a write by a moment; without this, a reconcile in that moment would
    send the same status again. A write that failed stops being trusted after a few seconds.
    """
    with _Seen.lock:
        written = _Seen.written.get(key)
    uid = (raw.get("metadata") or {}).get("uid", "")
    if written is not None and written[1] == uid and time.monotonic() - written[0] < WRITES_TRUSTED_SECONDS:
        raw = {**raw, "status": {**(raw.get("status") or {}), **written[2]}}
    return kopf.Body(cast(kopf.RawBody, raw))


def _remember_write(key: Key, raw: dict[str, Any], patch: kopf.Patch) -> None:
    status = patch.get("status")
    if not status:
        return
    uid = (raw.get("metadata") or {}).get("uid", "")
    with _Seen.lock:
        earlier = _Seen.written.get(key)
        fields = {**earlier[2], **status} if earlier is not None and earlier[1] == uid else dict(status)
        _Seen.written[key] = (time.monotonic(), uid, fields)


def _lock_of(key: Key) -> threading.Lock:
    """One reconcile at a time per resource (kopf's event and the scheduler's may meet)."""
    with _Seen.lock:
        return _Seen.running.setdefault(key, threading.Lock())


class _Failures:
    """Consecutive failed reconciles per resource, for the retry backoff (reset by a success)."""

    counts: ClassVar[dict[Key, int]] = {}
    lock: ClassVar[threading.Lock] = threading.Lock()


FIRST_RETRY_SECONDS, MAX_RETRY_SECONDS = 1.0, 60.0
"""A failed reconcile is tried again after 1, 2, 4 ... seconds, at most a minute apart (as kopf's
error backoffs would, for handlers it retries)."""


def _retry_delay(failures: int) -> float:
    return min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** (failures - 1))


def _guarded(key: Key, reconcile: Callable[[], Next | None]) -> None:
    """Run one reconcile; on failure log one line (the traceback at debug level) and retry later."""
    try:
        next_ = reconcile()
    except Exception as error:
        with _Failures.lock:
            failures = _Failures.counts[key] = _Failures.counts.get(key, 0) + 1
        delay = _retry_delay(failures)
        log.warning("reconciling %s %s/%s failed (%s: %s); attempt %d, trying again in %.0fs", key[0], key[1],
                    key[2], type(error).__name__, str(error).splitlines()[0] if str(error) else "", failures, delay)
        log.debug("the failed reconcile of %s/%s/%s", *key, exc_info=True)
        SCHEDULER.after(key, delay)
        return
    with _Failures.lock:
        _Failures.counts.pop(key, None)
    if next_ is not None:
        _follow_up(key, next_)


def _reconcile_and_write(key: Key, event_body: dict[str, Any] | None) -> Next | None:
    """Reconcile under the resource's lock, then write the status it decided, for this uid only.

    Without an event's body, the latest one seen is read under the lock, so it is never older
    than one a concurrent reconcile used. None when the object is gone or was replaced meanwhile
    (its successor has events of its own).
    """
    with _lock_of(key):
        context: contextvars.Context | None = None
        if event_body is None:
            with _Seen.lock:
                seen = _Seen.bodies.get(key)
            if seen is None:
                return None  # deleted since
            raw, context = seen
        else:
            raw = event_body
        patch = kopf.Patch()
        body = _as_written(key, raw)
        run = RECONCILERS[key[0]]
        next_ = context.copy().run(run, body, patch, _Seen.indexes) if context else run(body, patch, _Seen.indexes)
        requested = ((raw.get("metadata") or {}).get("annotations") or {}).get(RECONCILE_REQUEST)
        if requested is not None and (body.get("status") or {}).get("lastHandledReconcileAt") != requested:
            patch.status["lastHandledReconcileAt"] = requested
        changed = dict(patch.get("status") or {})
        if changed:
            plural, namespace, name = key
            uid = (raw.get("metadata") or {}).get("uid", "")
            code = kube.patch_status(kube.namespaced(GROUP, VERSION, namespace, plural, name), uid,
                                     body.get("status") or {}, changed)  # as seen, recent writes included
            if code == 404:
                return None  # deleted meanwhile; its DELETED event clears the rest
            if code == 422:
                with _Seen.lock:
                    _Seen.written.pop(key, None)
                raise StaleStatusWrite(f"the status write met another object or a changed one (uid {uid})")
            _remember_write(key, raw, patch)
    return next_


class StaleStatusWrite(RuntimeError):
    """The object changed (or was replaced) between the reconcile's read and its status write."""


def _run_scheduled(key: Key) -> None:
    """A due reconcile (a time fell due, a child changed, or a retry), with the latest body seen."""
    _guarded(key, lambda: _reconcile_and_write(key, None))


def _reconcile_event(key: Key, raw: dict[str, Any]) -> None:
    """A reconcile for a watch event; the status is written here, not by kopf (kopf's patch
    carries no uid precondition)."""
    _guarded(key, lambda: _reconcile_and_write(key, raw))


def _follow_up(key: Key, next_: Next) -> None:
    if next_.after is not None:
        SCHEDULER.after(key, next_.after)
    if next_.changed and key[0] in DEPENDENTS:
        _requeue_dependents(key)


def _requeue_dependents(key: Key) -> None:
    plural, namespace, name = key
    kind, path = DEPENDENTS[plural]
    with _Seen.lock:
        candidates = [(k, raw) for k, (raw, _) in _Seen.bodies.items() if k[0] == kind and k[1] == namespace]
    for candidate, raw in candidates:
        value: Any = raw
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if value == name:
            SCHEDULER.after(candidate, 0)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Operator tuning in one place: watch streams, quiet event posting, worker threads, a client."""
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    settings.execution.max_workers = 32
    watch_only_children(settings)
    kube.configure_client()
    SCHEDULER.start(_run_scheduled)


@kopf.on.cleanup()
def stop_scheduler(**_: Any) -> None:
    SCHEDULER.stop()


@kopf.on.probe(id="galley")
def probe(**_: Any) -> str:
    return "ok"


def _on_event(plural: str) -> Callable[..., None]:
    def handler(type: str | None, body: kopf.Body, **indexes: Any) -> None:
        key = (plural, body.metadata.namespace or "default", body.metadata.name or "")
        raw = dict(body)
        gone = type == "DELETED" or bool(body.metadata.get("deletionTimestamp"))
        with _Seen.lock:
            previous = _Seen.bodies.get(key)
            _Seen.indexes = indexes
            if gone:
                _Seen.bodies.pop(key, None)
                _Seen.running.pop(key, None)
                _Seen.written.pop(key, None)
                with _Failures.lock:
                    _Failures.counts.pop(key, None)
            else:
                _Seen.bodies[key] = (raw, contextvars.copy_context())
        if gone:
            SCHEDULER.forget(key)
        elif not (type == "MODIFIED" and previous is not None and _only_status_moved(previous[0], raw)):
            _reconcile_event(key, raw)
        elif key[0] in DEPENDENTS and previous[0].get("status") != raw.get("status"):
            # The status this operator wrote is now in the indexes that dependents read: a dependent
            # requeued at write time may have seen the old one.
            _requeue_dependents(key)

    handler.__name__ = handler.__qualname__ = f"{plural}_event"
    return handler


def _only_status_moved(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """True when spec, generation, labels and annotations are as they were."""
    meta_before, meta_after = before.get("metadata") or {}, after.get("metadata") or {}
    return (before.get("spec") == after.get("spec")
            and all(meta_before.get(k) == meta_after.get(k) for k in ("generation", "labels", "annotations")))


for _plural in RECONCILERS:
    kopf.on.event(GROUP, VERSION, _plural)(_on_event(_plural))
