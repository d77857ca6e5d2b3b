"""What each kind's reconcile does: read children from the watch caches, create what is missing,
decide with :mod:`galley.control`, and say what status to write and when to look again.

Called from kopf's event handlers and from the scheduler (:mod:`galley.operator.handlers`), so
every function here is idempotent: children are created only when absent, all state lives in the
resources, and status is written only where it changed, so a reconcile's own write, coming back
as a watch event, ends there.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import kopf
from pydantic import ValidationError

from galley import storage
from galley.api.flavors import default_catalogue
from galley.api.meta import Condition
from galley.api.resources import Model, OnlineService, TrainingJob
from galley.control import reasons as r
from galley.control.conditions import is_true, set_condition
from galley.control.models import locate_package, model_status
from galley.control.progress import job_identity, read_progress
from galley.control.services import plan_service
from galley.control.training import training_status
from galley.model.config import PackageConfig, PackageError, PackageUnreachable, read_config
from galley.operator import builders, kube
from galley.operator.activity import observe_activity
from galley.operator.indexes import every, first
from galley.operator.observe import observe_trainer
from galley.operator.settings import SETTINGS

log = logging.getLogger("galley.operator")
KSERVE_CRD = "inferenceservices.serving.kserve.io"
KSERVE_API = ("serving.kserve.io", "v1beta1")
KSERVE_CHECK_SECONDS = float(os.environ.get("GALLEY_KSERVE_CHECK_SECONDS", "30"))
"""How long the answer to "is KServe installed?" is reused."""
_kserve_installed_cache = kube.TtlCache[bool](KSERVE_CHECK_SECONDS)
_progress_records = kube.TtlCache[dict[str, Any] | None](SETTINGS.interval)
_package_configs = kube.TtlCache[tuple[PackageConfig | None, str | None, bool]](SETTINGS.interval)
"""Storage reads reused for one status interval: a resource's own status write re-runs its reconcile."""
_recent = kube.RECENTLY_CREATED
RESYNC_FACTOR = 30
"""Settled resources are looked at again every RESYNC_FACTOR intervals, as a safety net."""


# -- helpers ----------------------------------------------------------------------------------------


def _status_patch(status: Any) -> dict[str, Any]:
    """Status as a merge patch: fields that became unset are removed (null), lists replaced whole.

    Inside list items (conditions) unset and empty fields are left out rather than sent as null or
    "": the API server's schema validation refuses a null message.
    """
    data: dict[str, Any] = status.model_dump(mode="json", by_alias=True)
    for key, value in data.items():
        if isinstance(value, list):
            data[key] = _without_empty(value)
        elif value == "":
            data[key] = None
    return data


def _without_empty(items: list[Any]) -> list[Any]:
    """List items (conditions) with their unset and empty fields left out."""
    return [_pruned(item) for item in items]


def _pruned(value: Any) -> Any:
    """A value with unset, empty and null fields dropped at every level: what the API server keeps."""
    if isinstance(value, dict):
        kept = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v is not None} or None
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return None if value == "" else value


@dataclass(frozen=True)
class Next:
    """What a reconcile asks for afterwards."""

    after: float | None
    """Seconds until this resource should be looked at again (None: only when something changes)."""
    changed: bool
    """Its status changed: resources that depend on it (Models, OnlineServices) should look again."""


HANDLER_FIELDS = {"lastHandledReconcileAt"}
"""Status fields the handlers write around every reconcile; reconcilers leave them alone."""


def write_status(body: kopf.Body, patch: kopf.Patch, desired: dict[str, Any]) -> bool:
    """Patch only the status fields that differ from what the resource already says.

    Level-triggered handlers see their own writes come back as watch events; an unchanged status
    is not written again, so that loop ends after one turn.
    """
    current = body.get("status") or {}
    changed = {k: v for k, v in desired.items()
               if k not in HANDLER_FIELDS and _pruned(v) != _pruned(current.get(k))}
    if changed:
        patch.status.update(changed)
    return bool(changed)


@contextlib.contextmanager
def _storage_of(namespace: str, secret: str | None) -> Iterator[None]:
    """Storage as the resource may read it: its Secret, else the install's default Secret, else
    anonymous; the install's endpoint where the Secret names none. Never the operator's identity."""
    values = dict(kube.secret_values(namespace, secret or SETTINGS.default_storage_secret))
    if SETTINGS.storage_endpoint:
        values.setdefault(storage.DEFAULT_ENDPOINT, SETTINGS.storage_endpoint)
    with storage.using_credentials(values):
        yield


def _event_on_phase_change(body: Any, old: str | None, new: str | None, message: str) -> None:
    """An Event when a resource enters a phase worth telling (not the initial Pending)."""
    if new and new != old and new != "Pending":
        kopf.event(body, type="Warning" if new == "Failed" else "Normal", reason=new, message=message)


# -- TrainingJob ------------------------------------------------------------------------------------


def reconcile_training_job(body: kopf.Body, patch: kopf.Patch, indexes: Mapping[str, Any]) -> Next:
    """Create the trainer Job (once) and keep status in step with it and the progress record.

    Job and Pod changes bring a reconcile by themselves; while the trainer runs, its progress
    record (in storage, which sends no events) is read again every interval.
    """
    name, namespace = body.metadata.name or "", body.metadata.namespace or "default"
    old_phase = (body.get("status") or {}).get("phase")
    try:
        job = TrainingJob.model_validate(dict(body))
    except ValidationError as error:
        return _invalid_training_job(body, patch, str(error.errors(include_url=False)[0]["msg"]))
    flavor = default_catalogue()[job.spec.resources.flavor]
    trainer = builders.trainer_name(job)
    existing = first(indexes["trainer_jobs"], namespace, name) or _recent.peek(("Job", namespace, trainer))
    finished = old_phase in ("Succeeded", "Failed")
    progress = None
    try:
        if existing is None and not finished:
            # refuse an unknown Secret first
            kube.secret_values(namespace, job.spec.storage.secret_ref or SETTINGS.default_storage_secret)
            existing = _create_trainer(job, flavor, namespace, body)
        elif existing is not None:
            progress = _progress(namespace, job)
    except IndexedJobsUnsupported as error:
        return _invalid_training_job(body, patch, str(error), reason=r.INDEXED_JOBS_UNSUPPORTED)
    except LookupError as error:
        return _invalid_training_job(body, patch, str(error), failed=False)
    if finished and existing is None and job.status is not None:
        return Next(None, False)  # the Job was cleaned up after it finished (ttlSecondsAfterFinished)
    pods = every(indexes["trainer_pods"], namespace, name)
    status = training_status(job, observe_trainer(existing, pods), progress)
    changed = write_status(body, patch, _status_patch(status))
    _event_on_phase_change(body, old_phase, status.phase, f"TrainingJob {name} is {status.phase}")
    return Next(None if status.phase in ("Succeeded", "Failed") else SETTINGS.interval, changed)


class IndexedJobsUnsupported(Exception):
    """The API server drops ``completionMode: Indexed``: every worker would believe it is rank 0."""


def _create_trainer(job: TrainingJob, flavor: Any, namespace: str, owner: kopf.Body) -> dict[str, Any]:
    """Create the Job (and a multi-node job's Service); the Job as this process now knows it."""
    manifest = builders.build_trainer_job(job, flavor, SETTINGS)
    jobs = kube.namespaced("batch", "v1", namespace, "jobs")
    if job.spec.resources.nodes > 1:
        # A dry run shows what the API server would keep, before anything is made.
        _, preview = kube.request("POST", jobs + "?dryRun=All", manifest)
        if (preview.get("spec") or {}).get("completionMode") != "Indexed":
            raise IndexedJobsUnsupported(
                f"resources.nodes is {job.spec.resources.nodes}, but this cluster's Jobs have no "
                "completionMode: Indexed (Kubernetes 1.21 or later), so workers could not tell their ranks")
        kube.create(kube.namespaced("", "v1", namespace, "services"), builders.build_workers_service(job, SETTINGS),
                    owner)
    created = kube.create(jobs, manifest, owner)
    seen_as = {"status": (created or {}).get("status") or {}}
    _recent.put(("Job", namespace, builders.trainer_name(job)), seen_as)
    return seen_as


def _progress(namespace: str, job: TrainingJob) -> dict[str, Any] | None:
    """The trainer's progress record (None before it writes one or while storage cannot be read)."""
    uri, secret, identity = job.spec.output.uri, job.spec.storage.secret_ref, job_identity(job)

    def load() -> dict[str, Any] | None:
        with _storage_of(namespace, secret):
            return read_progress(uri, identity)

    return _progress_records.get((namespace, uri, secret, identity), load)


def _field_problem(error: ValidationError) -> str:
    """The first problem of a spec that the CRD schema let through, with the field it is in."""
    first_error = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first_error["loc"])
    return f"{where}: {first_error['msg']}" if where else str(first_error["msg"])


def _invalid_spec(body: kopf.Body, patch: kopf.Patch, error: ValidationError, phase: str | None = None) -> Next:
    """Ready=False, reason InvalidSpec, naming the field (a Model or OnlineService whose spec passes the
    schema but not Galley's checks, such as a flavor the catalogue lacks). Looked at again every
    interval: a chart upgrade may add the flavor."""
    message = _field_problem(error)
    status = dict(body.get("status") or {})
    conditions = [Condition.model_validate(c) for c in status.get("conditions") or []]
    conditions = set_condition(conditions, r.READY, "False", r.INVALID_SPEC, message,
                               generation=body.meta.get("generation"))
    update: dict[str, Any] = {
        "conditions": _without_empty([c.model_dump(mode="json", by_alias=True) for c in conditions]),
        "observedGeneration": body.meta.get("generation")}
    if phase is not None:
        update["phase"] = phase
        _event_on_phase_change(body, status.get("phase"), phase, message)
    return Next(SETTINGS.interval, write_status(body, patch, update))


def _invalid_training_job(body: kopf.Body, patch: kopf.Patch, message: str, failed: bool = True,
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
    changed = write_status(body, patch, {
        "phase": phase,
        "conditions": _without_empty([c.model_dump(mode="json", by_alias=True) for c in conditions])})
    _event_on_phase_change(body, status.get("phase"), phase, message)
    return Next(None if failed else SETTINGS.interval, changed)


# -- Model ------------------------------------------------------------------------------------------


def reconcile_model(body: kopf.Body, patch: kopf.Patch, indexes: Mapping[str, Any]) -> Next:
    """Find the package (from the TrainingJob or the URI), check config.json, record what it holds.

    A change of its TrainingJob brings a reconcile; a Model that is not Ready also looks again
    every interval (its package may be uploaded by hand), a Ready one every few minutes.
    """
    namespace = body.metadata.namespace or "default"
    try:
        model = Model.model_validate(dict(body))
    except ValidationError as invalid:
        return _invalid_spec(body, patch, invalid)
    job_name = model.spec.source.training_job
    job_body = first(indexes["training_jobs"], namespace, job_name) if job_name else None
    job = TrainingJob.model_validate(job_body) if job_body else None
    source = locate_package(model, job)
    config_, error, unreachable = None, None, False
    if source.uri:
        secret = model.spec.storage.secret_ref or (job.spec.storage.secret_ref if job else None)
        config_, error, unreachable = _package_config(namespace, source.uri, secret)
    status = model_status(model, source, config_, error, unreachable=unreachable)
    changed = write_status(body, patch, _status_patch(status))
    ready = is_true(status.conditions, r.READY)
    return Next(SETTINGS.interval * (RESYNC_FACTOR if ready else 1), changed)


def _package_config(namespace: str, uri: str,
                    secret: str | None) -> tuple[PackageConfig | None, str | None, bool]:
    """The package's config.json, or why it cannot be read and whether that may pass (the store
    did not answer, as opposed to answering that there is no package)."""

    def load() -> tuple[PackageConfig | None, str | None, bool]:
        try:
            with _storage_of(namespace, secret):
                return read_config(uri), None, False
        except PackageUnreachable as problem:
            return None, str(problem), True
        except (PackageError, LookupError) as problem:
            return None, str(problem), False

    return _package_configs.get((namespace, uri, secret), load)


# -- OnlineService ----------------------------------------------------------------------------------


def _kserve_installed() -> bool:
    def load() -> bool:
        return kube.read(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{KSERVE_CRD}") is not None

    return _kserve_installed_cache.get(KSERVE_CRD, load)


def reconcile_online_service(body: kopf.Body, patch: kopf.Patch, indexes: Mapping[str, Any]) -> Next:
    """Roll out the predictor (KServe or raw), keep it running or stopped as the lifecycle says.

    Looks again exactly when the autostop or the idle check falls due (asking the predictor then
    when it last served a prediction); changes of the Deployment or the Model bring
    a reconcile by themselves; an InferenceService (not watched: KServe may not be installed) is
    read again every interval while it rolls out.
    """
    name, namespace = body.metadata.name or "", body.metadata.namespace or "default"
    try:
        service = OnlineService.model_validate(dict(body))
    except ValidationError as invalid:
        return _invalid_spec(body, patch, invalid, phase="Failed")
    model_body = first(indexes["models"], namespace, service.spec.model)
    model = Model.model_validate(model_body) if model_body else None
    runtime = _runtime_of(service)
    kserve = runtime == "kserve"
    _remove_other_runtime(service, namespace, runtime, indexes)
    if kserve:
        child = kube.read(kube.namespaced(*KSERVE_API, namespace, "inferenceservices", service.name))
    else:
        child = first(indexes["predictor_deployments"], namespace, name) or \
            _recent.peek(("Deployment", namespace, builders.predictor_name(service)))
    ready, url = _observe_predictor(service, namespace, kserve, child)
    url = builders.external_url(service) or url
    idle_stop = service.spec.auto_stop is not None and service.spec.auto_stop.idle is not None
    activity = observe_activity(service, namespace, kserve, SETTINGS) if ready and idle_stop else None
    plan = plan_service(service, model, ready, url, activity=activity,
                        serving_uri=_serving_uri(kserve, child) if ready else None)
    plan.status.runtime = runtime
    if model is not None and model.status is not None and model.status.uri:
        flavor = default_catalogue()[service.spec.flavor]
        if kserve:
            _apply_inference_service(service, model, flavor, namespace, plan.run, body, child)
        else:
            has_service = first(indexes["predictor_services"], namespace, name) is not None or \
                _recent.peek(("Service", namespace, builders.predictor_name(service))) is not None
            _apply_raw(service, model, flavor, namespace, plan.run, body, child, has_service)
    elif child is not None:
        _stop_without_model(service, namespace, kserve, child)
    _apply_ingress(service, namespace, body, first(indexes["predictor_ingresses"], namespace, name))
    changed = write_status(body, patch, _status_patch(plan.status))
    old_phase = (body.get("status") or {}).get("phase")
    _event_on_phase_change(body, old_phase, plan.status.phase, f"OnlineService {name} is {plan.status.phase}")
    resync = SETTINGS.interval * (1 if plan.status.phase == "Pending" else RESYNC_FACTOR)
    return Next(min(resync, plan.requeue_after) if plan.requeue_after is not None else resync, changed)


def _runtime_of(service: OnlineService) -> Literal["kserve", "raw"]:
    """kserve or raw. ``runtime: auto`` is decided once and kept in status; only a spec change
    (a new generation) decides again, so installing KServe later moves no running service."""
    if service.spec.runtime != "auto":
        return service.spec.runtime
    status = service.status
    if status is not None and status.runtime and status.observed_generation == service.metadata.generation:
        return status.runtime
    return "kserve" if _kserve_installed() else "raw"


def _remove_other_runtime(service: OnlineService, namespace: str, runtime: str, indexes: Mapping[str, Any]) -> None:
    """After a switch of runtime, the workload of the other one goes (it would serve on beside)."""
    recorded = service.status.runtime if service.status else None
    if recorded is None or recorded == runtime:
        return
    name = builders.predictor_name(service)
    if runtime == "kserve":
        if first(indexes["predictor_deployments"], namespace, service.name) is not None:
            kube.delete(kube.namespaced("apps", "v1", namespace, "deployments", name))
        if first(indexes["predictor_services"], namespace, service.name) is not None:
            kube.delete(kube.namespaced("", "v1", namespace, "services", name))
    else:
        kube.delete(kube.namespaced(*KSERVE_API, namespace, "inferenceservices", service.name))
    log.info("OnlineService %s/%s moved from %s to %s: the %s workload was removed", namespace, service.name,
             recorded, runtime, recorded)


def _serving_uri(kserve: bool, child: dict[str, Any] | None) -> str | None:
    """The package the Ready pods serve once a rollout is complete; None while one is under way."""
    if child is None:
        return None
    if kserve:
        status, meta = child.get("status") or {}, child.get("metadata") or {}
        if status.get("observedGeneration") not in (None, meta.get("generation")):
            return None
        containers = (((child.get("spec") or {}).get("predictor") or {}).get("containers") or [{}])
        args = containers[0].get("args") or []
        return str(args[args.index("--model") + 1]) if "--model" in args else None
    status = child.get("status") or {}
    complete = child.get("rolledOut") and status.get("updatedReplicas", 0) >= status.get("replicas", 0)
    return (child.get("template") or {}).get(builders.MODEL_URI) if complete else None


def _observe_predictor(service: OnlineService, namespace: str, kserve: bool,
                       child: dict[str, Any] | None) -> tuple[bool, str | None]:
    status = (child or {}).get("status") or {}
    if kserve:
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", []))
        return ready, status.get("url")
    ready = bool(child and status.get("readyReplicas", 0) >= 1 and child["spec"].get("replicas", 0) >= 1)
    return ready, builders.raw_url(service, namespace, SETTINGS)


def _apply_inference_service(service: OnlineService, model: Model, flavor: Any, namespace: str, run: bool,
                             owner: kopf.Body, current: dict[str, Any] | None) -> None:
    desired = builders.build_inference_service(service, model, flavor, SETTINGS, run)
    if current is None:
        if run:
            kube.create(kube.namespaced(*KSERVE_API, namespace, "inferenceservices"), desired, owner)
        return
    stop = desired["metadata"]["annotations"][builders.KSERVE_STOP]
    if ((current.get("metadata") or {}).get("annotations") or {}).get(builders.KSERVE_STOP) != stop \
            or not builders.holds(current.get("spec") or {}, desired["spec"]):
        kube.merge_patch(kube.namespaced(*KSERVE_API, namespace, "inferenceservices", service.name),
                         {"metadata": {"annotations": {builders.KSERVE_STOP: stop}}, "spec": desired["spec"]})


def _stop_without_model(service: OnlineService, namespace: str, kserve: bool, current: dict[str, Any]) -> None:
    """The Model (or its package's location) is gone: stop the predictor, as the embedded backend
    does, keeping it for when the Model comes back."""
    if kserve:
        annotations = (current.get("metadata") or {}).get("annotations") or {}
        if annotations.get(builders.KSERVE_STOP) != "true":
            kube.merge_patch(kube.namespaced(*KSERVE_API, namespace, "inferenceservices", service.name),
                             {"metadata": {"annotations": {builders.KSERVE_STOP: "true"}}})
    elif (current.get("spec") or {}).get("replicas", 0) != 0:
        kube.merge_patch(kube.namespaced("apps", "v1", namespace, "deployments", builders.predictor_name(service)),
                         {"spec": {"replicas": 0}})


def _apply_ingress(service: OnlineService, namespace: str, owner: kopf.Body, current: dict[str, Any] | None) -> None:
    """Create, update or remove the Ingress so that it matches ``spec.expose.ingress``."""
    desired = builders.build_ingress(service)
    name = builders.predictor_name(service)
    if desired is None:
        if current is not None:
            kube.delete(kube.namespaced("networking.k8s.io", "v1", namespace, "ingresses", name))
    elif current is None:
        if _recent.peek(("Ingress", namespace, name)) is None:
            kube.create(kube.namespaced("networking.k8s.io", "v1", namespace, "ingresses"), desired, owner)
            _recent.put(("Ingress", namespace, name), desired)
    else:
        owned = {key: desired["spec"].get(key) for key in builders.INGRESS_FIELDS}
        if not all(builders.holds((current.get("spec") or {}).get(key), value) for key, value in owned.items()):
            kube.merge_patch(kube.namespaced("networking.k8s.io", "v1", namespace, "ingresses", name),
                             {"spec": owned})  # None removes a field the spec no longer asks for


def _apply_raw(service: OnlineService, model: Model, flavor: Any, namespace: str, run: bool,
               owner: kopf.Body, current: dict[str, Any] | None, has_service: bool) -> None:
    desired = builders.build_deployment(service, model, flavor, SETTINGS, run)
    name = builders.predictor_name(service)
    if current is None and not run:
        return
    annotations = desired["spec"]["template"]["metadata"]["annotations"]
    if current is None:
        kube.create(kube.namespaced("apps", "v1", namespace, "deployments"), desired, owner)
        _recent.put(("Deployment", namespace, name), {"spec": {"replicas": desired["spec"]["replicas"]},
                                                      "template": dict(annotations), "status": {}})
    elif (current.get("template") or {}).get(builders.TEMPLATE_HASH) != annotations[builders.TEMPLATE_HASH]:
        # What the pods were rendered from changed (package, flavor, precision, image): roll out.
        kube.request("PATCH", kube.namespaced("apps", "v1", namespace, "deployments", name), [
            {"op": "replace", "path": "/spec/template", "value": desired["spec"]["template"]},
            {"op": "replace", "path": "/spec/replicas", "value": desired["spec"]["replicas"]},
        ], content_type="application/json-patch+json")
        log.info("OnlineService %s/%s: rolling out a new predictor template (%s)", namespace, service.name,
                 annotations[builders.TEMPLATE_HASH])
    elif current["spec"].get("replicas", 0) != desired["spec"]["replicas"]:
        kube.merge_patch(kube.namespaced("apps", "v1", namespace, "deployments", name),
                         {"spec": {"replicas": desired["spec"]["replicas"]}})
    if not has_service:  # also mends a run that stopped between the two creations
        kube.create(kube.namespaced("", "v1", namespace, "services"), builders.build_service(service), owner)
        _recent.put(("Service", namespace, name), {})
