"""kopf wiring: level-triggered event handlers that only enqueue, and the work queue's reconcile.

A watch event of a Galley resource records its body and adds its key to the work queue
(:mod:`galley.operator.workqueue`) in the urgent lane, unless only its status moved (the
reconcile's own write coming back). A change of a child (Job, Pod, Deployment) and a due time
(autostop, the next look at a running trainer's progress) add the same key to the normal lane.
A worker then runs the reconcile (:mod:`galley.operator.reconcile`) with the latest body seen and
writes the status it decided. No API, storage or HTTP call runs on kopf's threads. There are no
kopf timers and no change-detecting handlers, so kopf puts no finalizer and no state on the
resources: they can be deleted while the operator is down, and a restarted operator reconciles
all it lists.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

import kopf

from galley import storage
from galley.api.meta import GROUP, RECONCILE_REQUEST, VERSION
from galley.operator import indexes as _indexes  # noqa: F401  (registers the watch caches)
from galley.operator import kube, metrics
from galley.operator import runtime as operator_runtime
from galley.operator.indexes import watch_only_children
from galley.operator.reconcile import Next, reconcile_model, reconcile_online_service, reconcile_training_job
from galley.operator.runtime import Runtime
from galley.operator.workqueue import Key, WaitLog

log = logging.getLogger("galley.operator")
Reconcile = Callable[[Runtime, kopf.Body, kopf.Patch, Mapping[str, Any]], Next]
RECONCILERS: dict[str, Reconcile] = {
    "trainingjobs": reconcile_training_job, "models": reconcile_model, "onlineservices": reconcile_online_service,
}
DEPENDENTS = {"trainingjobs": ("models", ("spec", "source", "trainingJob")),
              "models": ("onlineservices", ("spec", "model"))}
"""Whose status another kind reads: when a TrainingJob's status changes its Models look again, and so on."""


OPERATOR_STORAGE_TIMEOUTS = storage.Timeouts(connect=3, read=5, attempts=2)
"""A store that does not answer holds one of the work queue's workers for about 16 s, not 6 minutes:
the reconcile says StorageUnavailable and is tried again with its backoff, and every other
resource keeps its workers."""

WRITES_TRUSTED_SECONDS = 5.0
"""How long a status write is taken as done before its watch event shows it."""


def _as_written(runtime: Runtime, key: Key, raw: dict[str, Any]) -> kopf.Body:
    """The body with this operator's recent status writes laid over it.

    The cached body can lag a write by a moment; without this, a reconcile in that moment would
    send the same status again. A write that failed stops being trusted after a few seconds.
    """
    seen = runtime.seen
    with seen.lock:
        written = seen.written.get(key)
    uid = (raw.get("metadata") or {}).get("uid", "")
    if written is not None and written[1] == uid and time.monotonic() - written[0] < WRITES_TRUSTED_SECONDS:
        raw = {**raw, "status": {**(raw.get("status") or {}), **written[2]}}
    return kopf.Body(cast(kopf.RawBody, raw))


def _remember_write(runtime: Runtime, key: Key, raw: dict[str, Any], patch: kopf.Patch) -> None:
    status = patch.get("status")
    if not status:
        return
    uid = (raw.get("metadata") or {}).get("uid", "")
    seen = runtime.seen
    with seen.lock:
        earlier = seen.written.get(key)
        fields = {**earlier[2], **status} if earlier is not None and earlier[1] == uid else dict(status)
        seen.written[key] = (time.monotonic(), uid, fields)


FIRST_RETRY_SECONDS, MAX_RETRY_SECONDS = 1.0, 60.0
"""A failed reconcile is tried again after 1, 2, 4 ... seconds, at most a minute apart (as kopf's
error backoffs would, for handlers it retries)."""


def _retry_delay(failures: int) -> float:
    return min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** (failures - 1))


def _guarded(runtime: Runtime, key: Key, reconcile: Callable[[], Next | None]) -> None:
    """Run one reconcile; on failure log one line (the traceback at debug level) and retry later.
    Counted in the operator's metrics by kind and result, with its duration."""
    started = time.monotonic()
    try:
        next_ = reconcile()
    except Exception as error:
        metrics.observe_reconcile(key[0], "error", time.monotonic() - started)
        with runtime.seen.lock:
            failures = runtime.seen.failures[key] = runtime.seen.failures.get(key, 0) + 1
        delay = _retry_delay(failures)
        log.warning("reconciling %s %s/%s failed (%s: %s); attempt %d, trying again in %.0fs", key[0], key[1],
                    key[2], type(error).__name__, str(error).splitlines()[0] if str(error) else "", failures, delay)
        log.debug("the failed reconcile of %s/%s/%s", *key, exc_info=True)
        metrics.count_retry(key[0])
        runtime.queue.after(key, delay)
        return
    metrics.observe_reconcile(key[0], "success", time.monotonic() - started)
    with runtime.seen.lock:
        runtime.seen.failures.pop(key, None)
    if next_ is not None:
        _follow_up(runtime, key, next_)


def _reconcile_and_write(runtime: Runtime, key: Key) -> Next | None:
    """Reconcile the latest body seen, then write the status it decided, for this uid only.

    The queue runs one reconcile of a key at a time, so no other reconcile of this resource
    writes meanwhile. None when the object is gone or was replaced meanwhile (its successor has
    events of its own).
    """
    seen = runtime.seen
    with seen.lock:
        latest = seen.bodies.get(key)
    if latest is None:
        return None  # deleted since it was queued
    raw, context = latest
    patch = kopf.Patch()
    body = _as_written(runtime, key, raw)
    run = RECONCILERS[key[0]]
    next_ = context.copy().run(run, runtime, body, patch, seen.indexes)
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
            with seen.lock:
                seen.written.pop(key, None)
            raise StaleStatusWrite(f"the status write met another object or a changed one (uid {uid})")
        _remember_write(runtime, key, raw, patch)
    return next_


class StaleStatusWrite(RuntimeError):
    """The object changed (or was replaced) between the reconcile's read and its status write."""


def _run_queued(runtime: Runtime, key: Key) -> None:
    """A worker's reconcile of ``key`` (an event, a child's change, a due time or a retry)."""
    _guarded(runtime, key, lambda: _reconcile_and_write(runtime, key))


def _follow_up(runtime: Runtime, key: Key, next_: Next) -> None:
    if next_.after is not None:
        runtime.queue.after(key, next_.after)
    if next_.changed and key[0] in DEPENDENTS:
        _requeue_dependents(runtime, key)


def _requeue_dependents(runtime: Runtime, key: Key) -> None:
    with runtime.seen.lock:
        readers = list(runtime.seen.dependents.get(key, ()))
    for reader in readers:
        runtime.queue.add(reader)


def _dependency_of(key: Key, raw: dict[str, Any]) -> Key | None:
    """The resource whose status ``key``'s reconcile reads (see :data:`DEPENDENTS`), or None."""
    for target_plural, (reader_plural, path) in DEPENDENTS.items():
        if reader_plural != key[0]:
            continue
        value: Any = raw
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        return (target_plural, key[1], value) if isinstance(value, str) and value else None
    return None


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Operator tuning in one place: watch streams, quiet event posting, worker threads, a client;
    and this run's :class:`Runtime`, which kopf hands to every handler in ``memo``."""
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    settings.execution.max_workers = 32  # sync handlers, the index functions of every child event among them
    watch_only_children(settings)
    kube.configure_client()
    storage.set_timeouts(OPERATOR_STORAGE_TIMEOUTS)
    runtime = memo[operator_runtime.MEMO_KEY] = Runtime.create()
    wait_log = WaitLog(runtime.queue)

    def observe(key: Key, lane: int, waited: float, ran: float, ok: bool) -> None:
        wait_log(key, lane, waited, ran, ok)
        metrics.set_queue_depth(runtime.queue.depth())

    runtime.queue.observe = observe
    runtime.queue.start(lambda key: _run_queued(runtime, key))


@kopf.on.cleanup()
def stop_queue(memo: kopf.Memo, **_: Any) -> None:
    runtime = operator_runtime.of(memo)
    runtime.queue.stop()
    runtime.progress_records.stop()


@kopf.on.probe(id="galley")
def probe(**_: Any) -> str:
    return "ok"


def _on_event(plural: str) -> Callable[..., None]:
    def handler(type: str | None, body: kopf.Body, memo: kopf.Memo, **indexes: Any) -> None:
        runtime = operator_runtime.of(memo)
        seen = runtime.seen
        key = (plural, body.metadata.namespace or "default", body.metadata.name or "")
        raw = dict(body)
        gone = type == "DELETED" or bool(body.metadata.get("deletionTimestamp"))
        uid = body.metadata.uid or ""
        with seen.lock:
            previous = seen.bodies.get(key)
            seen.indexes = indexes
            # kopf handles each uid's events on its own: a re-created object's ADDED can come before
            # its predecessor's DELETED (or a late update of it), which must leave the successor alone.
            if previous is not None and _is_successor(previous[0], uid, raw):
                return
            seen.track_dependency(key, None if gone else _dependency_of(key, raw))
            if gone:
                seen.bodies.pop(key, None)
                seen.written.pop(key, None)
                seen.failures.pop(key, None)
            else:
                seen.bodies[key] = (raw, contextvars.copy_context())
        if gone:
            runtime.queue.forget(key)
            if key[0] in DEPENDENTS:  # a Model whose job is deleted says so now, not at its next resync
                _requeue_dependents(runtime, key)
        # A listing (type None: the start, or a watch stream re-listed after a gap) of an object already
        # seen is a change only where its spec, labels or annotations moved, as an update is.
        elif not (type in (None, "MODIFIED") and previous is not None and _only_status_moved(previous[0], raw)):
            runtime.queue.add(key, urgent=True)  # a user's change: ahead of every child's follow-up
            if previous is None and key[0] in DEPENDENTS:
                # First seen (created, or listed after a restart): whoever read it before the
                # watch cache held it looks again, rather than at its next resync.
                _requeue_dependents(runtime, key)
        elif key[0] in DEPENDENTS and previous[0].get("status") != raw.get("status"):
            # The status this operator wrote is now in the indexes that dependents read: a dependent
            # requeued at write time may have seen the old one.
            _requeue_dependents(runtime, key)

    handler.__name__ = handler.__qualname__ = f"{plural}_event"
    return handler


def _is_successor(recorded: dict[str, Any], uid: str, raw: dict[str, Any]) -> bool:
    """True when ``recorded`` is another object of the same name made after the one ``raw`` shows:
    a name is free again only once its holder is gone, so all of the old object's events carry
    lower resource versions than its successor's."""
    meta = recorded.get("metadata") or {}
    return meta.get("uid", "") != uid and _version(meta) > _version(raw.get("metadata") or {})


def _version(meta: dict[str, Any]) -> int:
    try:
        return int(meta.get("resourceVersion") or 0)
    except ValueError:
        return 0


def _only_status_moved(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """True when spec, generation, labels and annotations are as they were."""
    meta_before, meta_after = before.get("metadata") or {}, after.get("metadata") or {}
    return (before.get("spec") == after.get("spec")
            and all(meta_before.get(k) == meta_after.get(k) for k in ("generation", "labels", "annotations")))


for _plural in RECONCILERS:
    kopf.on.event(GROUP, VERSION, _plural)(_on_event(_plural))
