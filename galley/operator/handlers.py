"""kopf handlers: thin. Each reads what it needs, asks :mod:`galley.control`, and carries it out.

Every kind has one reconcile function, run on create, update, resume and on a timer, so a handler
interrupted at any point (or an operator restarted) converges on the next call: children are
created only when absent, and all state lives in the resources themselves.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import kopf
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from pydantic import ValidationError

from galley import storage
from galley.api.flavors import default_catalogue
from galley.api.meta import GROUP, VERSION, Condition
from galley.api.resources import Model, OnlineService, TrainingJob
from galley.control import reasons as r
from galley.control.conditions import set_condition
from galley.control.models import locate_package, model_status
from galley.control.services import plan_service
from galley.control.training import training_status
from galley.model import package
from galley.operator import builders
from galley.operator.observe import observe_trainer
from galley.operator.settings import SETTINGS
from galley.trainer.progress import read_progress

log = logging.getLogger("galley.operator")
KSERVE_CRD = "inferenceservices.serving.kserve.io"
KSERVE_CHECK_SECONDS = 30.0
"""How long the answer to "is KServe installed?" is reused."""


class _Clients:
    """One API client (one connection pool) for every handler thread: a TLS handshake per call is slow."""

    api: client.ApiClient | None = None
    kserve_checked_at: float = -KSERVE_CHECK_SECONDS
    kserve_installed: bool = False


def _api() -> client.ApiClient:
    if _Clients.api is None:
        _Clients.api = client.ApiClient()
    return _Clients.api


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Operator tuning in one place: progress in our own annotations, quiet event posting, a client."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    settings.execution.max_workers = 16
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = 32
    _Clients.api = client.ApiClient(configuration)


@kopf.on.probe(id="galley")
def probe(**_: Any) -> str:
    return "ok"


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
    return [{k: v for k, v in item.items() if v not in (None, "")} if isinstance(item, dict) else item
            for item in items]


def _raw(call: Any, *args: Any, **kwargs: Any) -> Any:
    """Call the API and parse the JSON ourselves: the client's model objects cost more than the request."""
    response = call(*args, _preload_content=False, **kwargs)
    try:
        return json.loads(response.data)
    finally:
        response.release_conn()  # unpreloaded responses keep their connection until released


def _get(read: Any, *args: Any) -> Any:
    try:
        return read(*args)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def _custom(group: str, version: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = _get(_raw, client.CustomObjectsApi(_api()).get_namespaced_custom_object,
                                        group, version, namespace, plural, name)
    return found


SECRET_CACHE_SECONDS = 30.0
"""How long a Secret read is reused: a burst of new resources costs one read per Secret, not one each."""
_secrets: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}


def _secret_values(namespace: str, name: str | None) -> dict[str, str] | None:
    """A Secret's data, decoded, for reading storage; None when unset. Values never leave memory."""
    if not name:
        return None
    cached = _secrets.get((namespace, name))
    if cached is not None and time.monotonic() - cached[0] < SECRET_CACHE_SECONDS:
        return cached[1]
    secret = _get(client.CoreV1Api(_api()).read_namespaced_secret, name, namespace)
    if secret is None:
        raise LookupError(f"Secret {name!r} not found in namespace {namespace!r}")
    values = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
    _secrets[(namespace, name)] = (time.monotonic(), values)
    return values


@contextlib.contextmanager
def _storage_of(namespace: str, secret: str | None) -> Iterator[None]:
    with storage.using_credentials(_secret_values(namespace, secret)):
        yield


def _event_on_phase_change(body: Any, old: str | None, new: str | None, message: str) -> None:
    """An Event when a resource enters a phase worth telling (not the initial Pending)."""
    if new and new != old and new != "Pending":
        kopf.event(body, type="Warning" if new == "Failed" else "Normal", reason=new, message=message)


def _create(kind_api: Any, method: str, namespace: str, body: dict[str, Any], owner: Any) -> None:
    kopf.adopt(body, owner=owner)
    try:
        response = getattr(kind_api, method)(namespace, body, _preload_content=False)
        response.data  # noqa: B018  (read the body so the connection can be reused)
        response.release_conn()
    except ApiException as error:
        if error.status != 409:  # already there: another handler run created it
            raise


# -- TrainingJob ------------------------------------------------------------------------------------


@kopf.on.resume(GROUP, VERSION, "trainingjobs")
@kopf.on.create(GROUP, VERSION, "trainingjobs")
@kopf.on.update(GROUP, VERSION, "trainingjobs")
@kopf.timer(GROUP, VERSION, "trainingjobs", interval=SETTINGS.interval, initial_delay=SETTINGS.interval)
def trainingjob_reconcile(body: kopf.Body, name: str, namespace: str | None, patch: kopf.Patch, **_: Any) -> None:
    """Create the trainer Job (once) and keep status in step with it and the progress record."""
    namespace = namespace or "default"
    old_phase = (body.get("status") or {}).get("phase")
    try:
        job = TrainingJob.model_validate(dict(body))
    except ValidationError as error:
        _invalid_training_job(body, patch, str(error.errors(include_url=False)[0]["msg"]))
        return
    flavor = default_catalogue()[job.spec.resources.flavor]
    batch = client.BatchV1Api(_api())
    existing = _get(_raw, batch.read_namespaced_job, builders.trainer_name(job), namespace)
    finished = old_phase in ("Succeeded", "Failed")
    try:
        if existing is None:
            _secret_values(namespace, job.spec.storage.secret_ref)  # refuse an unknown Secret before creating
            progress = None
        else:
            with _storage_of(namespace, job.spec.storage.secret_ref):
                progress = read_progress(job.spec.output.uri)
    except LookupError as error:
        _invalid_training_job(body, patch, str(error), failed=False)
        return
    except storage.StorageError:
        progress = None
    if existing is None and not finished:
        if job.spec.resources.nodes > 1:
            _create(client.CoreV1Api(_api()), "create_namespaced_service", namespace,
                    builders.build_workers_service(job, SETTINGS), body)
        _create(batch, "create_namespaced_job", namespace, builders.build_trainer_job(job, flavor, SETTINGS), body)
        existing = _get(_raw, batch.read_namespaced_job, builders.trainer_name(job), namespace)
    job_dict = _api().sanitize_for_serialization(existing) if existing is not None else None
    pods = client.CoreV1Api(_api()).list_namespaced_pod(
        namespace, label_selector=f"{builders.TRAINING_JOB_LABEL}={name}").items
    pod_dicts = [_api().sanitize_for_serialization(p) for p in pods]
    status = training_status(job, observe_trainer(job_dict, pod_dicts), progress)
    if finished and existing is None and job.status is not None:
        return  # the Job was cleaned up after it finished (ttlSecondsAfterFinished): keep the final status
    patch.status.update(_status_patch(status))
    _event_on_phase_change(body, old_phase, status.phase, f"TrainingJob {name} is {status.phase}")


def _invalid_training_job(body: kopf.Body, patch: kopf.Patch, message: str, failed: bool = True) -> None:
    status = dict(body.get("status") or {})
    # Only the conditions are read back: the rest of the body is what failed to validate.
    conditions = [Condition.model_validate(c) for c in status.get("conditions") or []]
    conditions = set_condition(conditions, r.CREATED, "False", r.INVALID_SPEC, message,
                               generation=body.meta.get("generation"))
    if failed:
        conditions = set_condition(conditions, r.FAILED, "True", r.INVALID_SPEC, message,
                                   generation=body.meta.get("generation"))
    phase = "Failed" if failed else "Pending"
    patch.status["phase"] = phase
    patch.status["conditions"] = _without_empty([c.model_dump(mode="json", by_alias=True) for c in conditions])
    _event_on_phase_change(body, status.get("phase"), phase, message)


# -- Model ------------------------------------------------------------------------------------------


@kopf.on.resume(GROUP, VERSION, "models")
@kopf.on.create(GROUP, VERSION, "models")
@kopf.on.update(GROUP, VERSION, "models")
@kopf.timer(GROUP, VERSION, "models", interval=SETTINGS.interval, initial_delay=SETTINGS.interval)
def model_reconcile(body: kopf.Body, namespace: str | None, patch: kopf.Patch, **_: Any) -> None:
    """Find the package (from the TrainingJob or the URI), check config.json, record what it holds."""
    namespace = namespace or "default"
    model = Model.model_validate(dict(body))
    job_name = model.spec.source.training_job
    job_body = _custom(GROUP, VERSION, "trainingjobs", namespace, job_name) if job_name else None
    job = TrainingJob.model_validate(job_body) if job_body else None
    source = locate_package(model, job)
    config_, error = None, None
    if source.uri:
        secret = model.spec.storage.secret_ref or (job.spec.storage.secret_ref if job else None)
        try:
            with _storage_of(namespace, secret):
                config_ = package.read_config(source.uri)
        except (package.PackageError, LookupError) as problem:
            error = str(problem)
    status = model_status(model, source, config_, error)
    patch.status.update(_status_patch(status))


# -- OnlineService ----------------------------------------------------------------------------------


def _kserve_installed() -> bool:
    now = time.monotonic()
    if now - _Clients.kserve_checked_at > KSERVE_CHECK_SECONDS:
        found = _get(client.ApiextensionsV1Api(_api()).read_custom_resource_definition, KSERVE_CRD)
        _Clients.kserve_installed, _Clients.kserve_checked_at = found is not None, now
    return _Clients.kserve_installed


@kopf.on.resume(GROUP, VERSION, "onlineservices")
@kopf.on.create(GROUP, VERSION, "onlineservices")
@kopf.on.update(GROUP, VERSION, "onlineservices")
@kopf.timer(GROUP, VERSION, "onlineservices", interval=SETTINGS.interval, initial_delay=SETTINGS.interval)
def onlineservice_reconcile(body: kopf.Body, name: str, namespace: str | None, patch: kopf.Patch,
                            **_: Any) -> None:
    """Roll out the predictor (KServe or raw), keep it running or stopped as the lifecycle says."""
    namespace = namespace or "default"
    service = OnlineService.model_validate(dict(body))
    model_body = _custom(GROUP, VERSION, "models", namespace, service.spec.model)
    model = Model.model_validate(model_body) if model_body else None
    kserve = service.spec.runtime == "kserve" or (service.spec.runtime == "auto" and _kserve_installed())
    child = _read_predictor(service, namespace, kserve)
    ready, url = _observe_predictor(service, namespace, kserve, child)
    plan = plan_service(service, model, ready, url)
    if model is not None and model.status is not None and model.status.uri:
        flavor = default_catalogue()[service.spec.flavor]
        if kserve:
            _apply_inference_service(service, model, flavor, namespace, plan.run, body, child)
        else:
            _apply_raw(service, model, flavor, namespace, plan.run, body, child)
    patch.status.update(_status_patch(plan.status))
    old_phase = (body.get("status") or {}).get("phase")
    _event_on_phase_change(body, old_phase, plan.status.phase, f"OnlineService {name} is {plan.status.phase}")


def _read_predictor(service: OnlineService, namespace: str, kserve: bool) -> dict[str, Any] | None:
    """The InferenceService or the Deployment, as JSON, or None."""
    if kserve:
        return _custom("serving.kserve.io", "v1beta1", "inferenceservices", namespace, service.name)
    found: dict[str, Any] | None = _get(_raw, client.AppsV1Api(_api()).read_namespaced_deployment,
                                        builders.predictor_name(service), namespace)
    return found


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
    api = client.CustomObjectsApi(_api())
    if current is None:
        if not run:
            return
        kopf.adopt(desired, owner=owner)
        api.create_namespaced_custom_object("serving.kserve.io", "v1beta1", namespace, "inferenceservices", desired)
        return
    stop = desired["metadata"]["annotations"][builders.KSERVE_STOP]
    if ((current.get("metadata") or {}).get("annotations") or {}).get(builders.KSERVE_STOP) != stop \
            or current.get("spec") != desired["spec"]:
        api.patch_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", namespace, "inferenceservices", service.name,
            {"metadata": {"annotations": {builders.KSERVE_STOP: stop}}, "spec": desired["spec"]})


def _apply_raw(service: OnlineService, model: Model, flavor: Any, namespace: str, run: bool,
               owner: kopf.Body, current: dict[str, Any] | None) -> None:
    apps, core = client.AppsV1Api(_api()), client.CoreV1Api(_api())
    desired = builders.build_deployment(service, model, flavor, SETTINGS, run)
    if current is None:
        if not run:
            return
        _create(apps, "create_namespaced_deployment", namespace, desired, owner)
        _create(core, "create_namespaced_service", namespace, builders.build_service(service), owner)
        return
    if run and _get(_raw, core.read_namespaced_service, builders.predictor_name(service), namespace) is None:
        # An earlier run stopped between the two creations: finish the job.
        _create(core, "create_namespaced_service", namespace, builders.build_service(service), owner)
    if current["spec"].get("replicas", 0) != desired["spec"]["replicas"]:
        apps.patch_namespaced_deployment(builders.predictor_name(service), namespace,
                                         {"spec": {"replicas": desired["spec"]["replicas"]}})
