"""Reading a trainer Job and its Pods into a :class:`TrainerState` (pure: dicts in, state out).

Reasons a user can act on are preferred over generic ones: a pod killed for memory makes the job
``OOMKilled`` even when Kubernetes reports ``BackoffLimitExceeded``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from galley.control import reasons as r
from galley.control import termination
from galley.control.training import TrainerState

_IMAGE_PULL = {"ImagePullBackOff", "ErrImagePull", "InvalidImageName"}
_GENERIC_JOB_REASONS = {r.BACKOFF_LIMIT_EXCEEDED, r.TRAINER_ERROR}
"""The Job's own reasons that the trainer's termination message replaces: it says what went wrong
(a bad data set, weights not found, storage down), where the Job only says that it gave up."""


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None


def _condition(items: list[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    return next((c for c in items or [] if c.get("type") == type_ and c.get("status") == "True"), None)


def _container_statuses(pod: dict[str, Any]) -> list[dict[str, Any]]:
    status = pod.get("status") or {}
    return list(status.get("containerStatuses") or []) + list(status.get("initContainerStatuses") or [])


def _trainer_said(pods: list[dict[str, Any]]) -> tuple[str, str] | None:
    """The reason and message of the latest trainer container that wrote a termination message."""
    said = []
    for pod in pods:
        for container in _container_statuses(pod):
            for key in ("state", "lastState"):
                terminated = (container.get(key) or {}).get("terminated") or {}
                parsed = termination.parse(terminated.get("message"))
                if parsed is not None:
                    said.append((str(terminated.get("finishedAt") or ""), parsed))
    return max(said)[1] if said else None


def observe_trainer(job: dict[str, Any] | None, pods: list[dict[str, Any]]) -> TrainerState:
    if job is None:
        return TrainerState(exists=False)
    status = job.get("status") or {}
    kept = job.get("podFailurePolicy")
    counted = None if kept is None else not kept  # None: not known (a Job seen before this was recorded)
    said = _trainer_said(pods)
    started, finished = _time(status.get("startTime")), _time(status.get("completionTime"))
    oom = any(((c.get("state") or {}).get("terminated") or {}).get("reason") == "OOMKilled"
              or ((c.get("lastState") or {}).get("terminated") or {}).get("reason") == "OOMKilled"
              for pod in pods for c in _container_statuses(pod))
    failed = _condition(status.get("conditions"), "Failed")
    if failed is not None:
        reason = r.OOM_KILLED if oom else {
            "DeadlineExceeded": r.DEADLINE_EXCEEDED, "BackoffLimitExceeded": r.BACKOFF_LIMIT_EXCEEDED,
        }.get(failed.get("reason", ""), r.TRAINER_ERROR)
        message = failed.get("message") or ""
        if oom:
            message = "the trainer ran out of memory; choose a flavor with more memory or a smaller batch_size"
        elif said is not None and said[0] == r.PREEMPTED:  # preemptions spent the backoffLimit (before 1.26)
            message = f"{message or 'the Job failed'}; its last trainer was preempted: {said[1]}"
        elif said is not None and reason in _GENERIC_JOB_REASONS:
            reason, message = said
        return TrainerState(exists=True, failed=True, failure_reason=reason, message=message,
                            started=started, finished=_time(failed.get("lastTransitionTime")) or finished,
                            preemptions_counted=counted)
    if _condition(status.get("conditions"), "Complete") is not None:
        return TrainerState(exists=True, succeeded=True, started=started, finished=finished,
                            preemptions_counted=counted)
    running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
    if running:
        return TrainerState(exists=True, active=True, started=started, preemptions_counted=counted)
    if said is not None and said[0] == r.PREEMPTED:  # the next pod resumes at the step it checkpointed
        return TrainerState(exists=True, waiting_reason=r.PREEMPTED, message=said[1], started=started,
                            preemptions_counted=counted)
    for pod in pods:
        pod_status = pod.get("status") or {}
        for condition in pod_status.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("reason") == "Unschedulable":
                return TrainerState(exists=True, waiting_reason=r.UNSCHEDULABLE, message=condition.get("message", ""),
                                    started=started)
        for container in _container_statuses(pod):
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in _IMAGE_PULL:
                return TrainerState(exists=True, waiting_reason=r.IMAGE_PULL_BACK_OFF,
                                    message=waiting.get("message") or f"cannot pull {container.get('image', '')}",
                                    started=started)
    return TrainerState(exists=True, started=started, preemptions_counted=counted)
