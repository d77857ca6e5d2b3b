"""TrainingJob status from what a backend observed of its trainer and the trainer's progress record.

The Kubernetes backend observes a Job and its Pods, the embedded backend a local process; both
describe it as a :class:`TrainerState` and get the same phases and conditions back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from galley.api.resources import TrainingJob, TrainingJobStatus, TrainingMetrics, TrainingPhase
from galley.control import reasons as r
from galley.control.conditions import now as utc_now
from galley.control.conditions import set_condition
from galley.control.usage import account, holding


@dataclass(frozen=True)
class TrainerState:
    """What a backend observed of the trainer workload."""

    exists: bool
    active: bool = False
    """A trainer is running now."""
    succeeded: bool = False
    failed: bool = False
    waiting_reason: str | None = None
    """Why a created trainer is not running yet (Unschedulable, ImagePullBackOff)."""
    failure_reason: str | None = None
    """OOMKilled, DeadlineExceeded, BackoffLimitExceeded or TrainerError."""
    message: str = ""
    started: datetime | None = None
    finished: datetime | None = None
    blocked_reason: str | None = None
    """Why the trainer cannot be created (NameConflict, ChildRejected): ``message`` says what the
    server or the holder of the name said. The job waits as Pending, and it is tried again."""
    preemptions_counted: bool | None = None
    """Whether a trainer stopped by SIGTERM counts against runPolicy.backoffLimit: it does where the API
    server dropped the Job's podFailurePolicy (before Kubernetes 1.26); None where not known."""


def default_model_uri(job: TrainingJob) -> str:
    return job.spec.output.uri.rstrip("/") + "/model/"


def training_status(job: TrainingJob, state: TrainerState, progress: dict[str, Any] | None,
                    at: datetime | None = None) -> TrainingJobStatus:
    """The status to write, given the previous one in ``job.status``."""
    now = at or utc_now()
    previous = job.status or TrainingJobStatus()
    generation = job.metadata.generation
    conditions = list(previous.conditions)

    def cond(type_: str, status: bool, reason: str, message: str = "") -> None:
        nonlocal conditions
        conditions = set_condition(conditions, type_, "True" if status else "False", reason, message,
                                   generation=generation, at=now)

    phase: TrainingPhase
    message = state.message or (progress or {}).get("message", "")
    if not state.exists:
        phase = "Pending"
        if state.blocked_reason:
            cond(r.CREATED, False, state.blocked_reason, state.message)
        else:
            cond(r.CREATED, False, r.PENDING, "the trainer has not been created yet")
    else:
        cond(r.CREATED, True, r.JOB_CREATED, _created_message(state))
        if state.failed:
            phase = "Failed"
            reason = state.failure_reason or r.TRAINER_ERROR
            cond(r.RUNNING, False, reason, message)
            cond(r.SUCCEEDED, False, reason, message)
            cond(r.FAILED, True, reason, message)
        elif state.succeeded:
            phase = "Succeeded"
            cond(r.RUNNING, False, r.COMPLETED)
            cond(r.SUCCEEDED, True, r.COMPLETED, f"model package at {_model_uri(job, progress)}")
        elif state.active:
            phase = "Running"
            epoch = (progress or {}).get("epoch")
            detail = f"epoch {epoch}/{progress.get('epochs')}" if progress and epoch else "starting"
            cond(r.RUNNING, True, r.TRAINING, detail)
        else:
            phase = "Pending"
            cond(r.RUNNING, False, state.waiting_reason or r.PENDING, message)

    epoch, epochs, metrics = previous.epoch, previous.epochs, previous.metrics
    if progress:
        epoch = max(epoch or 0, int(progress.get("epoch") or 0)) or epoch
        epochs = progress.get("epochs") or epochs
        values = progress.get("metrics") or {}
        metrics = TrainingMetrics(accuracy=values.get("accuracy"), loss=values.get("loss"),
                                  images_per_second=values.get("imagesPerSecond"))
    start_time = previous.start_time or _training_started(state, now)
    completion_time = previous.completion_time
    if phase in ("Succeeded", "Failed") and completion_time is None:
        completion_time = state.finished or now
    observed = previous.observed_generation if previous.observed_generation is not None else generation
    if generation is not None and observed is not None and generation > observed:
        cond(r.SPEC_ACCEPTED, False, r.SPEC_CHANGE_IGNORED,
             f"spec changed (generation {generation}) after the job started with generation {observed}; "
             "the change is ignored: create a new TrainingJob to train with it")
    cores, gpus = holding(job.spec.resources.flavor, job.spec.resources.nodes)
    usage = account(previous.usage, phase == "Running", cores, gpus, now,
                    ended=state.finished if phase in ("Succeeded", "Failed") else None)
    return TrainingJobStatus(
        phase=phase, conditions=conditions, observed_generation=observed, epoch=epoch, epochs=epochs,
        metrics=metrics, model_uri=_model_uri(job, progress) if phase == "Succeeded" else previous.model_uri,
        start_time=start_time, completion_time=completion_time, usage=usage,
    )


def _created_message(state: TrainerState) -> str:
    if state.preemptions_counted is None:
        return ""
    if state.preemptions_counted:
        return ("this cluster's Jobs have no podFailurePolicy (Kubernetes 1.26 or later): a preempted trainer "
                "resumes from its checkpoint, and counts against runPolicy.backoffLimit")
    return "a preempted trainer resumes from its checkpoint, and does not count against runPolicy.backoffLimit"


def _training_started(state: TrainerState, now: datetime) -> datetime | None:
    """When training began: first seen running (a trainer waiting for a node has not started)."""
    if state.active:
        return now
    if state.succeeded or state.failed:
        return state.started or now  # finished before it was seen running
    return None


def _model_uri(job: TrainingJob, progress: dict[str, Any] | None) -> str:
    return str((progress or {}).get("modelUri") or default_model_uri(job))
