"""OnlineService: roll out the predictor (KServe or raw), keep it running or stopped as the
lifecycle in :mod:`galley.control.services` says, expose it, and report what it serves."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

import kopf
from pydantic import ValidationError

from galley.api.flavors import default_catalogue
from galley.api.resources import Model, OnlineService, OnlineServiceStatus
from galley.control import reasons as r
from galley.control.conditions import find
from galley.control.services import idle_check_due, plan_service, service_blocked
from galley.operator import builders, kube, metrics
from galley.operator.activity import observe_activity
from galley.operator.indexes import first
from galley.operator.reconcile.status import (
    CHILD_PROBLEMS,
    RESYNC_FACTOR,
    Next,
    child_problem,
    create_child,
    event_on_phase_change,
    invalid_spec,
    recently_created,
    remember_created,
    status_patch,
    write_status,
)
from galley.operator.runtime import Runtime

log = logging.getLogger("galley.operator")
KSERVE_CRD = "inferenceservices.serving.kserve.io"
KSERVE_API = ("serving.kserve.io", "v1beta1")


def _kserve_installed(runtime: Runtime) -> bool:
    def load() -> bool:
        return kube.read(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{KSERVE_CRD}") is not None

    return runtime.kserve_installed.get(KSERVE_CRD, load)


def reconcile_online_service(runtime: Runtime, body: kopf.Body, patch: kopf.Patch,
                             indexes: Mapping[str, Any]) -> Next:
    """Roll out the predictor (KServe or raw), keep it running or stopped as the lifecycle says.

    Looks again exactly when the autostop or the idle check falls due (asking the predictor then
    when it last served a prediction); changes of the Deployment or the Model bring
    a reconcile by themselves; an InferenceService (not watched: KServe may not be installed) is
    read again every interval while it rolls out.

    Its children are the objects whose ownerReferences name its uid, and only those are patched,
    scaled or deleted. An object that holds a child's name but is not its own is left untouched,
    with ``Ready=False, NameConflict`` naming it; a child the API server refuses (a quota, an
    invalid name) gives ``Ready=False, ChildRejected`` with the server's message.
    """
    name, namespace = body.metadata.name or "", body.metadata.namespace or "default"
    uid = body.metadata.uid or ""
    try:
        service = OnlineService.model_validate(dict(body))
    except ValidationError as invalid:
        return invalid_spec(runtime, body, patch, invalid, phase="Failed")
    model_body = first(indexes["models"], namespace, service.spec.model)
    model = Model.model_validate(model_body) if model_body else None
    serving_runtime = _runtime_of(runtime, service)
    kserve = serving_runtime == "kserve"
    problems: list[tuple[str, str]] = []
    try:
        child = _own_workload(runtime, service, uid, namespace, kserve, indexes)
        # Only once the new runtime's workload is this service's: a name held by another object
        # (NameConflict) or a refusal leaves the old runtime serving, rather than nothing.
        _remove_other_runtime(service, uid, namespace, serving_runtime, indexes)
    except CHILD_PROBLEMS as error:
        problems.append(child_problem(error))
        child = None
    ready, url = _observe_predictor(runtime, service, namespace, kserve, child)
    url = builders.external_url(service) or url
    # Predictors are asked over the network only when the answer could stop the service.
    activity = observe_activity(service, namespace, kserve, runtime.settings) \
        if ready and idle_check_due(service) else None
    plan = plan_service(service, model, ready, url, activity=activity,
                        serving_uri=_serving_uri(kserve, child) if ready else None)
    plan.status.runtime = serving_runtime
    if not problems:
        try:
            if model is not None and model.status is not None and model.status.uri:
                flavor = default_catalogue()[service.spec.flavor]
                if kserve:
                    _apply_inference_service(runtime, service, model, flavor, namespace, plan.run, body, child)
                else:
                    has_service = first(indexes["predictor_services"], namespace, uid) is not None or \
                        recently_created(runtime, "Service", namespace, builders.predictor_name(service), uid) \
                        is not None
                    _apply_raw(runtime, service, model, flavor, namespace, plan.run, body, child, has_service)
            elif child is not None:
                _stop_without_model(service, namespace, kserve, child)
        except CHILD_PROBLEMS as error:
            problems.append(child_problem(error))
    try:
        _apply_ingress(runtime, service, namespace, body, first(indexes["predictor_ingresses"], namespace, uid))
    except CHILD_PROBLEMS as error:
        problems.append(child_problem(error))
    failure = (child or {}).get("replicaFailure") if not kserve and not ready else None
    if failure and plan.run:  # the Deployment is ours, but its pods are refused (a quota, a policy)
        problems.append((r.CHILD_REJECTED, f"Deployment {builders.predictor_name(service)!r} cannot create its "
                                           f"pods: {failure}"))
    if problems:
        log.warning("OnlineService %s/%s: %s", namespace, name, problems[0][1])
        plan = service_blocked(service, plan, *problems[0])
    changed = write_status(body, patch, status_patch(plan.status))
    _count_stop(service, plan.status)
    metrics.record_resource(OnlineService.KIND, namespace, name, plan.status.phase, plan.status.usage)
    old_phase = (body.get("status") or {}).get("phase")
    event_on_phase_change(body, old_phase, plan.status.phase, f"OnlineService {name} is {plan.status.phase}")
    # A raw Deployment's events bring a reconcile by themselves; an InferenceService is not watched
    # (KServe may be absent), and a refusal or a name held by another object sends no event.
    quick = problems or (kserve and plan.status.phase == "Pending")
    resync = runtime.settings.interval * (1 if quick else RESYNC_FACTOR)
    return Next(min(resync, plan.requeue_after) if plan.requeue_after is not None else resync, changed)


def _count_stop(service: OnlineService, decided: OnlineServiceStatus) -> None:
    """A stop this reconcile decided (Stopped became True), counted by its reason."""
    before = find(service.status.conditions, r.STOPPED) if service.status else None
    after = find(decided.conditions, r.STOPPED)
    if after is not None and after.status == "True" and (before is None or before.status != "True"):
        metrics.count_stop(after.reason)


def _own_workload(runtime: Runtime, service: OnlineService, uid: str, namespace: str, kserve: bool,
                  indexes: Mapping[str, Any]) -> dict[str, Any] | None:
    """The predictor workload this service owns: its InferenceService (read: not watched) or its
    Deployment (from the watch cache, or as just created). An InferenceService of its name that
    another owns raises :class:`kube.NameConflict`."""
    if kserve:
        found = kube.read(kube.namespaced(*KSERVE_API, namespace, "inferenceservices", service.name))
        if found is not None and not kube.owned_by(found, uid):
            raise kube.NameConflict("InferenceService", service.name, "OnlineService",
                                    list((found.get("metadata") or {}).get("ownerReferences") or []))
        return found
    found = first(indexes["predictor_deployments"], namespace, uid)
    return found or recently_created(runtime, "Deployment", namespace, builders.predictor_name(service), uid)


def _runtime_of(runtime: Runtime, service: OnlineService) -> Literal["kserve", "raw"]:
    """kserve or raw. ``runtime: auto`` is decided once and kept in status; only a spec change
    (a new generation) decides again, so installing KServe later moves no running service."""
    if service.spec.runtime != "auto":
        return service.spec.runtime
    status = service.status
    if status is not None and status.runtime and status.observed_generation == service.metadata.generation:
        return status.runtime
    return "kserve" if _kserve_installed(runtime) else "raw"


def _remove_other_runtime(service: OnlineService, uid: str, namespace: str, runtime: str,
                          indexes: Mapping[str, Any]) -> None:
    """After a switch of runtime, the workload of the other one goes (it would serve on beside):
    only what this service owns, each object by its uid (a successor of the name stays)."""
    recorded = service.status.runtime if service.status else None
    if recorded is None or recorded == runtime:
        return
    if runtime == "kserve":
        for index, plural in (("predictor_deployments", "deployments"), ("predictor_services", "services")):
            owned = first(indexes[index], namespace, uid)
            if owned is not None:
                group = ("apps", "v1") if plural == "deployments" else ("", "v1")
                kube.delete(kube.namespaced(*group, namespace, plural, owned["name"]), uid=owned["uid"])
    else:
        path = kube.namespaced(*KSERVE_API, namespace, "inferenceservices", service.name)
        found = kube.read(path)
        if found is not None and kube.owned_by(found, uid):
            kube.delete(path, uid=(found.get("metadata") or {}).get("uid"))
        elif found is not None:
            log.info("OnlineService %s/%s: InferenceService %s is not its own; left as it is", namespace,
                     service.name, service.name)
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


def _observe_predictor(runtime: Runtime, service: OnlineService, namespace: str, kserve: bool,
                       child: dict[str, Any] | None) -> tuple[bool, str | None]:
    status = (child or {}).get("status") or {}
    if kserve:
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", []))
        return ready, status.get("url")
    ready = bool(child and status.get("readyReplicas", 0) >= 1 and child["spec"].get("replicas", 0) >= 1)
    return ready, builders.raw_url(service, namespace, runtime.settings)


def _uid_of(current: dict[str, Any]) -> str | None:
    """The uid of a child as the watch cache (``uid``) or a read (``metadata.uid``) shows it."""
    return current.get("uid") or (current.get("metadata") or {}).get("uid")


def _apply_inference_service(runtime: Runtime, service: OnlineService, model: Model, flavor: Any, namespace: str,
                             run: bool, owner: kopf.Body, current: dict[str, Any] | None) -> None:
    desired = builders.build_inference_service(service, model, flavor, runtime.settings, run)
    if current is None:
        if run:
            create_child(kube.namespaced(*KSERVE_API, namespace, "inferenceservices"), desired, owner, lookup="get")
        return
    stop = desired["metadata"]["annotations"][builders.KSERVE_STOP]
    if ((current.get("metadata") or {}).get("annotations") or {}).get(builders.KSERVE_STOP) != stop \
            or not builders.holds(current.get("spec") or {}, desired["spec"]):
        kube.patch_child(kube.namespaced(*KSERVE_API, namespace, "inferenceservices", service.name), _uid_of(current),
                         {"metadata": {"annotations": {builders.KSERVE_STOP: stop}}, "spec": desired["spec"]},
                         lookup="get")


def _stop_without_model(service: OnlineService, namespace: str, kserve: bool, current: dict[str, Any]) -> None:
    """The Model is gone, or has no package: stop the predictor, as the embedded backend does,
    keeping it for when the Model comes back. (A Model whose TrainingJob is deleted keeps its
    package: see :mod:`galley.control.models`.)"""
    if kserve:
        annotations = (current.get("metadata") or {}).get("annotations") or {}
        if annotations.get(builders.KSERVE_STOP) != "true":
            kube.patch_child(kube.namespaced(*KSERVE_API, namespace, "inferenceservices", service.name),
                             _uid_of(current), {"metadata": {"annotations": {builders.KSERVE_STOP: "true"}}},
                             lookup="get")
    elif (current.get("spec") or {}).get("replicas", 0) != 0:
        kube.patch_child(kube.namespaced("apps", "v1", namespace, "deployments", builders.predictor_name(service)),
                         _uid_of(current), {"spec": {"replicas": 0}})


def _apply_ingress(runtime: Runtime, service: OnlineService, namespace: str, owner: kopf.Body,
                   current: dict[str, Any] | None) -> None:
    """Create, update or remove the Ingress (this service's own) so that it matches ``spec.expose.ingress``."""
    desired = builders.build_ingress(service)
    name = builders.predictor_name(service)
    uid = owner.metadata.uid or ""
    if desired is None:
        if current is not None:
            kube.delete(kube.namespaced("networking.k8s.io", "v1", namespace, "ingresses", current["name"]),
                        uid=_uid_of(current))
    elif current is None:
        if recently_created(runtime, "Ingress", namespace, name, uid) is None:
            create_child(kube.namespaced("networking.k8s.io", "v1", namespace, "ingresses"), desired, owner)
            remember_created(runtime, "Ingress", namespace, name, uid, desired)
    else:
        owned = {key: desired["spec"].get(key) for key in builders.INGRESS_FIELDS}
        if not all(builders.holds((current.get("spec") or {}).get(key), value) for key, value in owned.items()):
            kube.patch_child(kube.namespaced("networking.k8s.io", "v1", namespace, "ingresses", current["name"]),
                             _uid_of(current), {"spec": owned})  # None removes a field the spec no longer asks for


def _apply_raw(runtime: Runtime, service: OnlineService, model: Model, flavor: Any, namespace: str, run: bool,
               owner: kopf.Body, current: dict[str, Any] | None, has_service: bool) -> None:
    desired = builders.build_deployment(service, model, flavor, runtime.settings, run)
    name = builders.predictor_name(service)
    uid = owner.metadata.uid or ""
    if current is None and not run:
        return
    annotations = desired["spec"]["template"]["metadata"]["annotations"]
    path = kube.namespaced("apps", "v1", namespace, "deployments", name)
    if current is None:
        created = create_child(kube.namespaced("apps", "v1", namespace, "deployments"), desired, owner)
        remember_created(runtime, "Deployment", namespace, name, uid, {
            "name": name, "uid": ((created or {}).get("metadata") or {}).get("uid"),
            "spec": {"replicas": desired["spec"]["replicas"]}, "template": dict(annotations), "status": {}})
    elif (current.get("template") or {}).get(builders.TEMPLATE_HASH) != annotations[builders.TEMPLATE_HASH]:
        # What the pods were rendered from changed (package, flavor, precision, image): roll out.
        kube.patch_child(path, _uid_of(current), [
            {"op": "replace", "path": "/spec/template", "value": desired["spec"]["template"]},
            {"op": "replace", "path": "/spec/replicas", "value": desired["spec"]["replicas"]},
        ])
        log.info("OnlineService %s/%s: rolling out a new predictor template (%s)", namespace, service.name,
                 annotations[builders.TEMPLATE_HASH])
    elif current["spec"].get("replicas", 0) != desired["spec"]["replicas"]:
        kube.patch_child(path, _uid_of(current), {"spec": {"replicas": desired["spec"]["replicas"]}})
    if not has_service:  # also mends a run that stopped between the two creations
        created = create_child(kube.namespaced("", "v1", namespace, "services"), builders.build_service(service), owner)
        remember_created(runtime, "Service", namespace, name, uid,
                         {"name": name, "uid": ((created or {}).get("metadata") or {}).get("uid")})
