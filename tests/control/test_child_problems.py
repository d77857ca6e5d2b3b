"""A child that cannot be made (a name held by another's object, a refusal by the API server) is a
condition, the same one on every reconcile: pure decisions, with the clock passed in."""

from __future__ import annotations

from datetime import timedelta

from galley.api.resources import TrainingJob
from galley.control import reasons as r
from galley.control.conditions import find
from galley.control.services import plan_service, service_blocked
from galley.control.training import TrainerState, training_status
from tests.control.test_services import T0, ready_model, service


def test_a_blocked_service_writes_the_same_ready_condition_on_every_reconcile() -> None:
    svc = service()
    message = "Deployment 'food-service-predictor' already exists and is not this OnlineService's"
    for minutes in (0, 1, 2):  # the predictor of someone else is Ready: that is no readiness of ours
        at = T0 + timedelta(minutes=minutes)
        plan = service_blocked(svc, plan_service(svc, ready_model(), True, "http://x/", at), r.NAME_CONFLICT,
                               message, at)
        if minutes:
            assert plan.status == svc.status, "a persisting problem changes nothing, so nothing is written"
        svc = svc.model_copy(update={"status": plan.status})
    ready = find(svc.status.conditions, r.READY)  # type: ignore[union-attr]
    assert ready is not None and (ready.status, ready.reason, ready.message) == ("False", r.NAME_CONFLICT, message)
    assert ready.last_transition_time == T0
    assert svc.status.phase == "Pending"  # type: ignore[union-attr]


def test_a_trainer_that_cannot_be_created_leaves_the_job_pending_with_the_reason() -> None:
    job = TrainingJob.model_validate({"apiVersion": "galley.dev/v1alpha1", "kind": "TrainingJob",
                                      "metadata": {"name": "food-resnet50", "generation": 1},
                                      "spec": {"algorithm": {"name": "resnet50"}, "dataset": {"uri": "s3://food/data/"},
                                               "output": {"uri": "s3://food/out/"}}})
    said = "the API server refused to create a child (403): jobs.batch is forbidden: exceeded quota: q"
    status = training_status(job, TrainerState(exists=False, blocked_reason=r.CHILD_REJECTED, message=said), None,
                             at=T0)
    created = find(status.conditions, r.CREATED)
    assert status.phase == "Pending"
    assert created is not None and (created.status, created.reason, created.message) == ("False", r.CHILD_REJECTED,
                                                                                         said)
