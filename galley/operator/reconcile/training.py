"""TrainingJob: create the trainer Job, follow it and its progress record into status."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf
from pydantic import ValidationError

from galley.api.flavors import default_catalogue
from galley.api.meta import NAMES_KEPT, Condition
from galley.api.resources import TrainingJob
from galley.control import reasons as r
from galley.control.conditions import set_condition
from galley.control.progress import job_identity, read_progress
from galley.control.training import TrainerState, training_status
from galley.operator import builders, kube, metrics
from galley.operator.indexes import every, first
from galley.operator.observe import observe_trainer
from galley.operator.reconcile.status import (
    CHILD_PROBLEMS,
    RESYNC_FACTOR,
    Next,
    child_problem,
    create_child,
    event_on_phase_change,
    recently_created,
    remember_created,
    status_patch,
    storage_of,
    without_empty,
    write_status,
)
from galley.operator.runtime import Runtime

log = logging.getLogger("galley.operator")


def reconcile_training_job(runtime: Runtime, body: kopf.Body, patch: kopf.Patch, indexes: Mapping[str, Any]) -> Next:
    """Create the trainer Job (once) and keep status in step with it and the progress record.

    Job and Pod changes bring a reconcile by themselves; while the trainer runs, its progress
    record (in storage, which sends no events) is read again every interval.

    The trainer is the Job whose ownerReferences name this TrainingJob's uid, and its pods are
    that Job's: a Job left by an earlier TrainingJob of the same name (deleted with its Job
    orphaned) is not read as this one's. It holds the name, so this job waits with
    ``Created=False, NameConflict`` naming it, and the old Job is left untouched. A trainer the
    API server refuses (a quota, a policy, an invalid field) gives ``Created=False, ChildRejected``
    with the server's message. Both are tried again every interval.
    """
    name, namespace = body.metadata.name or "", body.metadata.namespace or "default"
    uid = body.metadata.uid or ""
    old_phase = (body.get("status") or {}).get("phase")
    try:
        job = TrainingJob.model_validate(dict(body), context={NAMES_KEPT: old_phase is not None})
    except ValidationError as error:
        return _invalid_training_job(runtime, body, patch, str(error.errors(include_url=False)[0]["msg"]))
    flavor = default_catalogue()[job.spec.resources.flavor]
    trainer = builders.trainer_name(job)
    existing = first(indexes["trainer_jobs"], namespace, uid) or \
        recently_created(runtime, "Job", namespace, trainer, uid)
    finished = old_phase in ("Succeeded", "Failed")
    progress = None
    blocked: tuple[str, str] | None = None
    observed: TrainerState | None = None
    try:
        if existing is None and not finished:
            # refuse an unknown Secret first
            runtime.secret_values(namespace, job.spec.storage.secret_ref or runtime.settings.default_storage_secret)
            existing = _create_trainer(runtime, job, flavor, namespace, body)
        elif existing is not None and not finished:  # a finished job's status holds its last record already
            observed = _trainer_state(existing, indexes, namespace)
            progress = _progress(runtime, namespace, job, observed, ("trainingjobs", namespace, name))
    except IndexedJobsUnsupported as error:
        return _invalid_training_job(runtime, body, patch, str(error), reason=r.INDEXED_JOBS_UNSUPPORTED)
    except LookupError as error:
        return _invalid_training_job(runtime, body, patch, str(error), failed=False)
    except CHILD_PROBLEMS as error:
        blocked = child_problem(error)
        log.warning("TrainingJob %s/%s: %s", namespace, name, blocked[1])
    if finished and existing is None and job.status is not None:
        metrics.record_resource(TrainingJob.KIND, namespace, name, job.status.phase, job.status.usage)
        return Next(None, False)  # the Job was cleaned up after it finished (ttlSecondsAfterFinished)
    if blocked is not None:
        state = TrainerState(exists=False, blocked_reason=blocked[0], message=blocked[1])
    else:  # as observed for the progress read, or the trainer just created
        state = observed or _trainer_state(existing, indexes, namespace)
    status = training_status(job, state, progress)
    changed = write_status(body, patch, status_patch(status))
    metrics.record_resource(TrainingJob.KIND, namespace, name, status.phase, status.usage)
    event_on_phase_change(body, old_phase, status.phase, f"TrainingJob {name} is {status.phase}")
    if status.phase in ("Succeeded", "Failed"):
        return Next(None, changed)
    # Its pods' events bring a reconcile; a running trainer's record is looked at every interval.
    return Next(runtime.settings.interval * (1 if state.active or blocked else RESYNC_FACTOR), changed)


def _trainer_state(existing: dict[str, Any] | None, indexes: Mapping[str, Any], namespace: str) -> TrainerState:
    job_uid = (existing or {}).get("uid")
    return observe_trainer(existing, every(indexes["trainer_pods"], namespace, job_uid) if job_uid else [])


class IndexedJobsUnsupported(Exception):
    """The API server drops ``completionMode: Indexed``: every worker would believe it is rank 0."""


def _create_trainer(runtime: Runtime, job: TrainingJob, flavor: Any, namespace: str,
                    owner: kopf.Body) -> dict[str, Any]:
    """Create the Job (and a multi-node job's Service); the Job as this process now knows it."""
    manifest = builders.build_trainer_job(job, flavor, runtime.settings)
    jobs = kube.namespaced("batch", "v1", namespace, "jobs")
    if job.spec.resources.nodes > 1:
        # A dry run shows what the API server would keep, before anything is made.
        code, preview = kube.request("POST", jobs + "?dryRun=All", manifest)
        # 409: the name is taken; the create below meets the same and says whose it is (NameConflict).
        if code != 409 and (preview.get("spec") or {}).get("completionMode") != "Indexed":
            raise IndexedJobsUnsupported(
                f"resources.nodes is {job.spec.resources.nodes}, but this cluster's Jobs have no "
                "completionMode: Indexed (Kubernetes 1.21 or later), so workers could not tell their ranks")
        create_child(kube.namespaced("", "v1", namespace, "services"),
                    builders.build_workers_service(job, runtime.settings), owner)
    created = create_child(jobs, manifest, owner)
    kept = (created or {}).get("spec") or {}  # what the API server kept: before 1.26 it drops podFailurePolicy
    seen_as = {"name": manifest["metadata"]["name"], "uid": ((created or {}).get("metadata") or {}).get("uid"),
               "podFailurePolicy": bool(kept.get("podFailurePolicy")) if created else None,
               "status": (created or {}).get("status") or {}}
    remember_created(runtime, "Job", namespace, builders.trainer_name(job), owner.metadata.uid or "", seen_as)
    return seen_as


def _progress(runtime: Runtime, namespace: str, job: TrainingJob, state: TrainerState,
              owner: tuple[str, str, str]) -> dict[str, Any] | None:
    """The trainer's progress record: None before a trainer has started (there is none to read).

    While it runs, the last record read, a fresh one being read in the background (the owner is
    reconciled again when it differs); once it has finished, read now, for the last epoch's
    metrics and the package's location (finished jobs are not read again).
    """
    if not (state.active or state.succeeded or state.failed):
        return None
    uri, secret, identity = job.spec.output.uri, job.spec.storage.secret_ref, job_identity(job)

    def load() -> dict[str, Any] | None:
        with storage_of(runtime, namespace, secret):
            return read_progress(uri, identity, strict=True)

    key = (namespace, uri, secret, identity)
    if state.succeeded or state.failed:
        # A store that cannot be read now raises: the job stays as it is and is tried again with
        # the retry backoff, rather than finish without its last epoch's metrics.
        return runtime.progress_records.now(key, load)
    return runtime.progress_records.latest(key, load, lambda: runtime.queue.add(owner))


def _invalid_training_job(runtime: Runtime, body: kopf.Body, patch: kopf.Patch, message: str, failed: bool = True,
                          reason: str = r.INVALID_SPEC) -> Next:
    """InvalidSpec: failed for a spec that cannot work, pending for a missing Secret (it may come)."""
    status = dict(body.get("status") or {})
    # Only the conditions are read back: the rest of the body is what failed to validate.
    conditions = [Condition.model_validate(c) for c in status.get("conditions") or []]
    conditions = set_condition(conditions, r.CREATED, "False", reason, message,
                               generation=body.meta.get("generation"))
    if failed:
        conditions = set_condition(conditions, r.FAILED, "True", reason, message,
                                   generation=body.meta.get("generation"))
    phase = "Failed" if failed else "Pending"
    metrics.record_resource(TrainingJob.KIND, body.metadata.namespace or "default", body.metadata.name or "", phase)
    changed = write_status(body, patch, {
        "phase": phase,
        "conditions": without_empty([c.model_dump(mode="json", by_alias=True) for c in conditions])})
    event_on_phase_change(body, status.get("phase"), phase, message)
    return Next(None if failed else runtime.settings.interval, changed)
