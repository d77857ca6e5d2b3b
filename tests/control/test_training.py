"""TrainingJob status from the trainer's state and progress record."""

from __future__ import annotations

from datetime import UTC, datetime

from galley.api.resources import TrainingJob
from galley.control.conditions import find
from galley.control.training import TrainerState, training_status

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def job(generation: int = 1) -> TrainingJob:
    return TrainingJob.model_validate({
        "apiVersion": "galley.dev/v1alpha1", "kind": "TrainingJob",
        "metadata": {"name": "food-resnet50", "generation": generation},
        "spec": {"dataset": {"uri": "s3://food/data/"}, "output": {"uri": "s3://food/output/"}}})


def test_running_with_progress_then_succeeded() -> None:
    progress = {"phase": "Running", "epoch": 3, "epochs": 20,
                "metrics": {"accuracy": 0.91, "loss": 0.3, "imagesPerSecond": 410.0}}
    status = training_status(job(), TrainerState(exists=True, active=True), progress, T0)
    assert (status.phase, status.epoch, status.epochs) == ("Running", 3, 20)
    assert status.metrics and status.metrics.accuracy == 0.91 and status.metrics.images_per_second == 410.0
    assert status.start_time == T0
    running = find(status.conditions, "Running")
    assert running and (running.status, running.reason, running.message) == ("True", "Training", "epoch 3/20")
    done = training_status(job().model_copy(update={"status": status}), TrainerState(exists=True, succeeded=True),
                           {**progress, "epoch": 20, "modelUri": "s3://food/output/model/"}, T0)
    assert done.phase == "Succeeded" and done.model_uri == "s3://food/output/model/" and done.completion_time == T0
    assert [(c.type, c.status) for c in done.conditions] == [("Created", "True"), ("Running", "False"),
                                                              ("Succeeded", "True")]


def test_start_time_is_when_training_began_not_when_the_trainer_was_created() -> None:
    created = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
    waiting = training_status(job(), TrainerState(exists=True, started=created, waiting_reason="Unschedulable"),
                              None, T0)
    assert waiting.start_time is None, "a trainer waiting for a V100 node has not started training"
    running = training_status(job().model_copy(update={"status": waiting}),
                              TrainerState(exists=True, active=True, started=created), None, T0)
    assert running.start_time == T0


def test_failure_reason_reaches_the_conditions() -> None:
    status = training_status(job(), TrainerState(exists=True, failed=True, failure_reason="OOMKilled",
                                                 message="the trainer ran out of memory"), None, T0)
    failed = find(status.conditions, "Failed")
    assert status.phase == "Failed" and failed and (failed.reason, failed.status) == ("OOMKilled", "True")


def test_waiting_reason_while_pending() -> None:
    status = training_status(job(), TrainerState(exists=True, waiting_reason="Unschedulable",
                                                 message="0/3 nodes have nvidia.com/gpu"), None, T0)
    running = find(status.conditions, "Running")
    assert status.phase == "Pending" and running and running.reason == "Unschedulable"


def test_epoch_never_goes_backwards_and_spec_changes_are_ignored_with_a_condition() -> None:
    first = training_status(job(), TrainerState(exists=True, active=True), {"epoch": 5, "epochs": 20}, T0)
    later = training_status(job(generation=2).model_copy(update={"status": first}),
                            TrainerState(exists=True, active=True), {"epoch": 4, "epochs": 20}, T0)
    assert later.epoch == 5 and later.observed_generation == 1
    ignored = find(later.conditions, "SpecAccepted")
    assert ignored and (ignored.status, ignored.reason) == ("False", "SpecChangeIgnored")
