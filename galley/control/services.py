"""OnlineService lifecycle: whether the predictor should run, its status, and when to look again.

Autostop in one place: when a service first becomes ready, ``status.stopAt`` is set to now plus
``autoStop.after``; at ``stopAt`` it stops (``Stopped=True, reason=AutoStopped``) and keeps its
configuration. ``autoStop.idle`` stops it (reason ``IdleStopped``) once no prediction has arrived
for that long since the later of its becoming Ready and ``status.lastRequestTime``, read from the
predictor (:mod:`galley.control.activity`); a predictor that cannot be asked counts as busy.
When both are set, the first to fall due stops the service. A start request (the
``galley.dev/start`` annotation with a new value, or ``spec.stopped`` going back to false) runs
it again with fresh clocks. Since everything is read from the resource, the timers survive a
restart of whoever carries them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from galley.api.durations import parse_duration
from galley.api.resources import Model, OnlineService, OnlineServiceStatus, ServicePhase
from galley.control import reasons as r
from galley.control.activity import Activity
from galley.control.conditions import find, is_true, set_condition
from galley.control.conditions import now as utc_now
from galley.control.usage import account, holding

START_ANNOTATION = "galley.dev/start"
"""Set it to a new value (a timestamp) to start a stopped service again."""


def stop_request() -> dict[str, Any]:
    """The merge patch that stops a service at once (either backend)."""
    return {"spec": {"stopped": True}}


def start_request() -> dict[str, Any]:
    """The merge patch that (re)starts a service: ``spec.stopped: false`` and a new start annotation."""
    stamp = f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%S.%fZ}"
    return {"spec": {"stopped": False}, "metadata": {"annotations": {START_ANNOTATION: stamp}}}


@dataclass(frozen=True)
class ServicePlan:
    """What to do with the predictor, and the status to write."""

    run: bool
    status: OnlineServiceStatus
    requeue_after: float | None
    """Seconds until a decision falls due (the autostop, the idle check), or None."""


IDLE_RECHECK = timedelta(seconds=10)
"""How soon to ask again when the idle time has passed but the predictor could not be asked."""


def _idle_deadline(service: OnlineService, st: OnlineServiceStatus) -> datetime | None:
    """When the service counts as idle unless a prediction arrives first (None: no idle stop).

    The clock runs from when the predictor last became Ready, not from the start request: a
    predictor slow to roll out has had no chance to be used.
    """
    idle = service.spec.auto_stop.idle if service.spec.auto_stop else None
    ready = find(st.conditions, r.READY)
    if idle is None or ready is None or ready.status != "True":
        return None
    since = ready.last_transition_time
    if st.last_request_time is not None and st.last_request_time > since:
        since = st.last_request_time
    return since + parse_duration(idle)


def idle_check_due(service: OnlineService, at: datetime | None = None) -> bool:
    """Whether the idle time has passed by what status already records, so that asking the
    predictor when it was last used could stop the service: the operator asks only then."""
    deadline = _idle_deadline(service, service.status or OnlineServiceStatus())
    return deadline is not None and (at or utc_now()) >= deadline


def _stop_due(service: OnlineService, st: OnlineServiceStatus, activity: Activity | None,
              now: datetime) -> tuple[str, str] | None:
    """The reason and message of an autostop that has fallen due, if one has."""
    auto_stop = service.spec.auto_stop
    if st.stop_at is not None and now >= st.stop_at:
        return r.AUTO_STOPPED, f"stopped by itself after {auto_stop.after if auto_stop else 'its autoStop time'}"
    deadline = _idle_deadline(service, st)
    if deadline is not None and now >= deadline and activity is not None and activity.known:
        return r.IDLE_STOPPED, f"no prediction for {auto_stop.idle if auto_stop else 'its idle time'}"
    return None


def _requeue(service: OnlineService, st: OnlineServiceStatus, now: datetime) -> float | None:
    due = [st.stop_at] if st.stop_at else []
    deadline = _idle_deadline(service, st)
    if deadline is not None:
        due.append(max(deadline, now + IDLE_RECHECK) if deadline <= now else deadline)
    return max(0.0, (min(due) - now).total_seconds()) if due else None


def plan_service(service: OnlineService, model: Model | None, child_ready: bool, url: str | None,
                 at: datetime | None = None, activity: Activity | None = None,
                 serving_uri: str | None = None) -> ServicePlan:
    """Decide from the resource, its Model, the predictor's readiness and (for ``autoStop.idle``)
    its ``activity``: None or not ``known`` never counts as idle. ``serving_uri`` is the package
    the ready predictor serves (None while a rollout is under way: status keeps the last one)."""
    now = at or utc_now()
    st = (service.status or OnlineServiceStatus()).model_copy(deep=True)
    spec = service.spec
    generation = service.metadata.generation

    def cond(type_: str, value: bool, reason: str, message: str = "") -> None:
        st.conditions = set_condition(st.conditions, type_, "True" if value else "False", reason, message,
                                      generation=generation, at=now)

    stopped = find(st.conditions, r.STOPPED)
    request = service.metadata.annotations.get(START_ANNOTATION)
    restart_by_request = request is not None and request != st.last_start_request
    restart_after_user_stop = (stopped is not None and stopped.status == "True"
                               and stopped.reason == r.STOPPED_BY_USER and not spec.stopped)
    if restart_by_request or restart_after_user_stop:
        st.last_start_request = request
        st.stop_at, st.stopped_at, st.started_at = None, None, now
        cond(r.STOPPED, False, r.STARTED, "start requested")
    st.observed_generation = generation
    last = activity.last_prediction.replace(microsecond=0) if activity and activity.last_prediction else None
    if last is not None and (st.last_request_time is None or last > st.last_request_time):
        st.last_request_time = last

    due = None if is_true(st.conditions, r.STOPPED) else _stop_due(service, st, activity if child_ready else None, now)
    phase: ServicePhase
    run = False
    if model is None or not (model.status and is_true(model.status.conditions, r.READY)):
        reason = r.MODEL_NOT_FOUND if model is None else r.MODEL_NOT_READY
        cond(r.READY, False, reason, f"Model {spec.model!r} {'does not exist' if model is None else 'is not Ready'}")
        phase = "Pending"
    elif spec.stopped:
        st.stopped_at = st.stopped_at or now
        st.stop_at = None
        cond(r.STOPPED, True, r.STOPPED_BY_USER, "spec.stopped is true")
        cond(r.READY, False, r.STOPPED_BY_USER, "stopped")
        phase = "Stopped"
    elif is_true(st.conditions, r.STOPPED) or due is not None:
        if due is not None:
            st.stopped_at = now
            if st.stop_at is not None and st.stop_at > now:  # stopped for idleness first
                st.stop_at = None
            reason, message = due
            cond(r.STOPPED, True, reason, f"{message}; start it again with `galley start {service.name}`")
        stop_reason = find(st.conditions, r.STOPPED)
        cond(r.READY, False, stop_reason.reason if stop_reason else r.AUTO_STOPPED, "stopped")
        phase = "Stopped"
    else:
        run = True
        st.model_uri = serving_uri or st.model_uri
        if find(st.conditions, r.STOPPED) is None:
            cond(r.STOPPED, False, r.STARTED)
        if child_ready:
            st.url = url
            st.started_at = st.started_at or now
            if spec.auto_stop and spec.auto_stop.after and st.stop_at is None:
                st.stop_at = now + parse_duration(spec.auto_stop.after)
            cond(r.READY, True, r.SERVING, f"serving at {url}")
            phase = "Running"
        else:
            cond(r.READY, False, r.ROLLING_OUT, "waiting for the predictor to become ready")
            phase = "Pending"
    st.phase = phase
    st.usage = account(st.usage, phase == "Running", *holding(spec.flavor, spec.replicas), now)
    requeue = _requeue(service, st, now) if run else None
    return ServicePlan(run=run, status=st, requeue_after=requeue)


def service_blocked(service: OnlineService, plan: ServicePlan, reason: str, message: str,
                    at: datetime | None = None) -> ServicePlan:
    """The plan, with a predictor workload that could not be made or changed: ``Ready=False``
    with ``reason`` (NameConflict, ChildRejected) and ``message``, phase Pending, looked at again
    as a rollout is. Ready is set from the status as it was before this plan, so a problem that
    persists writes the same condition every time (no new lastTransitionTime, no write)."""
    previous = (service.status or OnlineServiceStatus()).conditions
    ready = find(set_condition(previous, r.READY, "False", reason, message, generation=service.metadata.generation,
                               at=at or utc_now()), r.READY)
    assert ready is not None
    st = plan.status.model_copy(deep=True)
    st.conditions = [ready if c.type == r.READY else c for c in st.conditions]
    if find(st.conditions, r.READY) is None:
        st.conditions.append(ready)
    st.phase = "Pending"
    # Usage is accounted as it was: a period still open is counted in whole once the problem is gone
    # (or the service stops), and a persisting problem writes nothing.
    st.usage = (service.status or OnlineServiceStatus()).usage
    return ServicePlan(run=plan.run, status=st, requeue_after=plan.requeue_after)
