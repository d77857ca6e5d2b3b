"""OnlineService decisions: rollout, autostop, stop and start again; pure, with the clock passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from galley.api.resources import Model, OnlineService
from galley.control.activity import Activity
from galley.control.conditions import find
from galley.control.services import START_ANNOTATION, idle_check_due, plan_service

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def service(**spec: Any) -> OnlineService:
    return OnlineService.model_validate({"apiVersion": "galley.dev/v1alpha1", "kind": "OnlineService",
                                         "metadata": {"name": "food-service", "generation": 1},
                                         "spec": {"model": "food-model", "autoStop": {"after": "1h"}, **spec}})


def ready_model() -> Model:
    return Model.model_validate({
        "apiVersion": "galley.dev/v1alpha1", "kind": "Model", "metadata": {"name": "food-model"},
        "spec": {"source": {"uri": "s3://food/model/"}},
        "status": {"uri": "s3://food/model/", "conditions": [{"type": "Ready", "status": "True",
                                                              "reason": "PackageReady",
                                                              "lastTransitionTime": T0.isoformat()}]}})


def advance(svc: OnlineService, ready: bool, at: datetime, model: Model | None = None) -> tuple[OnlineService, bool]:
    plan = plan_service(svc, model or ready_model(), ready, "http://food-service.default" if ready else None, at)
    return svc.model_copy(update={"status": plan.status}), plan.run


def condition(svc: OnlineService, type_: str) -> tuple[str, str]:
    assert svc.status is not None
    found = find(svc.status.conditions, type_)
    assert found is not None
    return found.status, found.reason


def test_missing_model_waits() -> None:
    plan = plan_service(service(), None, False, None, T0)
    assert not plan.run
    assert [(c.type, c.status, c.reason) for c in plan.status.conditions] == [("Ready", "False", "ModelNotFound")]


def test_stop_at_is_set_when_first_ready_and_the_service_stops_by_itself() -> None:
    svc, run = advance(service(), False, T0)
    assert run and svc.status and svc.status.stop_at is None and condition(svc, "Ready") == ("False", "RollingOut")
    svc, run = advance(svc, True, T0 + timedelta(seconds=30))
    assert run and condition(svc, "Ready") == ("True", "Serving")
    assert svc.status and svc.status.stop_at == T0 + timedelta(seconds=30, hours=1)
    assert plan_service(svc, ready_model(), True, "u", T0 + timedelta(minutes=30)).requeue_after == 30 * 60 + 30
    svc, run = advance(svc, True, T0 + timedelta(hours=1, seconds=30))
    assert not run
    assert condition(svc, "Stopped") == ("True", "AutoStopped")
    assert svc.status and svc.status.phase == "Stopped"
    svc, run = advance(svc, False, T0 + timedelta(hours=5))
    assert not run, "a stopped service stays stopped until started"


def test_start_annotation_runs_it_again_with_a_fresh_stop_at() -> None:
    svc, _ = advance(service(), True, T0)
    svc, _ = advance(svc, True, T0 + timedelta(hours=2))
    restarted = svc.model_copy(update={"metadata": svc.metadata.model_copy(
        update={"annotations": {START_ANNOTATION: "2026-11-26T10:00:00Z"}})})
    restarted, run = advance(restarted, False, T0 + timedelta(hours=2, minutes=1))
    assert run and condition(restarted, "Stopped") == ("False", "Started")
    restarted, _ = advance(restarted, True, T0 + timedelta(hours=2, minutes=2))
    assert restarted.status and restarted.status.stop_at == T0 + timedelta(hours=3, minutes=2)
    again, run = advance(restarted, True, T0 + timedelta(hours=2, minutes=3))
    assert run and again.status and again.status.stop_at == restarted.status.stop_at, \
        "the same annotation value does not restart it twice"


def test_spec_stopped_stops_at_once_and_false_starts_again() -> None:
    svc, _ = advance(service(), True, T0)
    stopped = svc.model_copy(update={"spec": svc.spec.model_copy(update={"stopped": True})})
    stopped, run = advance(stopped, True, T0 + timedelta(minutes=1))
    assert not run and condition(stopped, "Stopped") == ("True", "StoppedByUser")
    resumed = stopped.model_copy(update={"spec": stopped.spec.model_copy(update={"stopped": False})})
    resumed, run = advance(resumed, False, T0 + timedelta(minutes=2))
    assert run and condition(resumed, "Stopped") == ("False", "Started")


def test_no_auto_stop_runs_until_stopped() -> None:
    svc = service(autoStop=None)
    svc, run = advance(svc, True, T0)
    assert run and svc.status and svc.status.stop_at is None
    plan = plan_service(svc, ready_model(), True, "u", T0 + timedelta(days=30))
    assert plan.run and plan.requeue_after is None


def test_last_transition_time_moves_only_when_status_flips() -> None:
    svc, _ = advance(service(), True, T0)
    first = find(svc.status.conditions, "Ready") if svc.status else None
    svc, _ = advance(svc, True, T0 + timedelta(minutes=5))
    later = find(svc.status.conditions, "Ready") if svc.status else None
    assert first and later and first.last_transition_time == later.last_transition_time == T0


def idle_service(**auto_stop: str) -> OnlineService:
    return service(autoStop=auto_stop)


def step(svc: OnlineService, at: datetime, activity: Activity | None) -> tuple[OnlineService, float | None, bool]:
    plan = plan_service(svc, ready_model(), True, "http://food-service.default", at, activity)
    return svc.model_copy(update={"status": plan.status}), plan.requeue_after, plan.run


def test_idle_stop_counts_from_the_start_then_from_the_last_prediction() -> None:
    svc, requeue, run = step(idle_service(idle="15m"), T0, Activity(None, True))
    assert run and svc.status and svc.status.stop_at is None, "idle alone sets no fixed stop time"
    assert requeue == 15 * 60
    used = T0 + timedelta(minutes=10, microseconds=250)
    svc, requeue, run = step(svc, T0 + timedelta(minutes=15), Activity(used, True))
    assert run, "a prediction 5 minutes ago keeps it running"
    assert svc.status and svc.status.last_request_time == T0 + timedelta(minutes=10)
    assert requeue == 10 * 60, "looks again when 15 minutes have passed since that prediction"
    svc, _, run = step(svc, T0 + timedelta(minutes=25), Activity(used, True))
    assert not run and condition(svc, "Stopped") == ("True", "IdleStopped")
    assert condition(svc, "Ready") == ("False", "IdleStopped")
    stopped = find(svc.status.conditions if svc.status else [], "Stopped")
    assert stopped and "no prediction for 15m" in stopped.message and "galley start food-service" in stopped.message


def test_a_predictor_that_cannot_be_asked_counts_as_busy() -> None:
    svc, _, _ = step(idle_service(idle="15m"), T0, Activity(None, True))
    for unknown in (None, Activity(None, False), Activity(T0 - timedelta(hours=1), False)):
        _, requeue, run = step(svc, T0 + timedelta(hours=2), unknown)
        assert run, f"{unknown} must not stop a service"
        assert requeue == 10, "asks again soon"
    svc, _, run = step(svc, T0 + timedelta(hours=2), Activity(None, True))
    assert not run and condition(svc, "Stopped") == ("True", "IdleStopped")


def test_with_after_and_idle_the_first_to_fall_due_stops_the_service() -> None:
    busy = T0 + timedelta(minutes=50)
    svc, requeue, _ = step(idle_service(after="1h", idle="15m"), T0, Activity(None, True))
    assert svc.status and svc.status.stop_at == T0 + timedelta(hours=1) and requeue == 15 * 60
    svc, requeue, run = step(svc, T0 + timedelta(minutes=55), Activity(busy, True))
    assert run and requeue == 5 * 60, "the fixed stop comes before the idle one"
    svc, _, run = step(svc, T0 + timedelta(hours=1), Activity(busy, True))
    assert not run and condition(svc, "Stopped") == ("True", "AutoStopped")

    svc, _, _ = step(idle_service(after="1h", idle="15m"), T0, Activity(None, True))
    svc, _, run = step(svc, T0 + timedelta(minutes=15), Activity(None, True))
    assert not run and condition(svc, "Stopped") == ("True", "IdleStopped")
    assert svc.status and svc.status.stop_at is None, "no stop time left in the future of a stopped service"


def test_an_idle_stopped_service_starts_again_with_a_fresh_idle_clock() -> None:
    svc, _, _ = step(idle_service(idle="15m"), T0, Activity(None, True))
    svc, _, run = step(svc, T0 + timedelta(minutes=20), Activity(None, True))
    assert not run
    restarted = svc.model_copy(update={"metadata": svc.metadata.model_copy(
        update={"annotations": {START_ANNOTATION: "2026-11-26T09:00:00Z"}})})
    at = T0 + timedelta(hours=3)
    svc, requeue, run = step(restarted, at, Activity(None, True))
    assert run and condition(svc, "Stopped") == ("False", "Started") and requeue == 15 * 60


def test_auto_stop_needs_after_or_idle() -> None:
    with pytest.raises(ValidationError, match="set after, idle or both"):
        idle_service()


def test_the_idle_clock_starts_when_the_predictor_is_ready_not_when_it_was_asked_to_start() -> None:
    svc, run = advance(idle_service(idle="15m"), False, T0)
    rolling = plan_service(svc, ready_model(), False, None, T0 + timedelta(minutes=20), Activity(None, True))
    assert rolling.run and rolling.requeue_after is None, "no idle clock while rolling out"
    svc = svc.model_copy(update={"status": rolling.status})
    svc, requeue, run = step(svc, T0 + timedelta(minutes=30), Activity(None, True))
    assert run and requeue == 15 * 60, "ready at last: 15 minutes from now"
    restarting = plan_service(svc, ready_model(), False, None, T0 + timedelta(hours=1), Activity(None, True))
    assert restarting.run, "a predictor that is not Ready now is never idle-stopped"


def test_the_idle_check_falls_due_only_when_the_recorded_idle_time_has_passed() -> None:
    svc, _, _ = step(idle_service(idle="15m"), T0, Activity(None, True))
    assert not idle_check_due(svc, T0 + timedelta(minutes=14))
    assert idle_check_due(svc, T0 + timedelta(minutes=15))
    assert not idle_check_due(service(), T0 + timedelta(days=1)), "no idle stop asked for"
