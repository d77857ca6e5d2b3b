"""Pure builders: a Galley resource in, the Kubernetes objects that carry it out.

No I/O here, so every rendered field is unit-tested. Storage credentials enter pods only by
reference (``envFrom`` the Secret named in ``spec.storage``): values are never copied.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from galley.api.fields import PREDICTOR_SUFFIX, TRAINER_SUFFIX, WORKERS_SUFFIX
from galley.api.flavors import Flavor
from galley.api.resources import Model, OnlineService, TrainingJob
from galley.control import termination
from galley.operator.settings import OperatorSettings
from galley.storage import DEFAULT_ENDPOINT

MANAGED_BY = {"app.kubernetes.io/managed-by": "galley"}
TRAINING_JOB_LABEL = "galley.dev/training-job"
SERVICE_LABEL = "galley.dev/online-service"
KSERVE_STOP = "serving.kserve.io/stop"
COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"

SCRATCH_VOLUME = "tmp"
SCRATCH_PATH = "/tmp"
"""Where trainer and predictor write, under a read-only root: an emptyDir. Python's ``tempfile``
puts downloaded packages and ONNX export and quantization scratch here, and their images set
HOME to it for what libraries cache there (onnxruntime's ~/.cache)."""


def trainer_name(job: TrainingJob) -> str:
    return job.name + TRAINER_SUFFIX


def workers_service_name(job: TrainingJob) -> str:
    return job.name + WORKERS_SUFFIX


def predictor_name(service: OnlineService) -> str:
    return service.name + PREDICTOR_SUFFIX


def _placement(flavor: Flavor, service_account: str | None) -> dict[str, Any]:
    """The pod-spec fields that put a pod on the flavor's nodes, under the chosen service account."""
    fields: dict[str, Any] = {}
    if flavor.pod_node_selector():
        fields["nodeSelector"] = flavor.pod_node_selector()
    if flavor.pod_tolerations():
        fields["tolerations"] = flavor.pod_tolerations()
    if service_account:
        fields["serviceAccountName"] = service_account
    return fields


def _container_security() -> dict[str, Any]:
    """A container's part of Pod Security ``restricted``, set on the container itself so that it
    holds whatever the pod says (KServe's Knative path accepts fewer pod-level fields)."""
    return {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def _no_api_token() -> dict[str, Any]:
    """Trainer and predictor never call the API server, so their pods carry no token to steal."""
    return {"automountServiceAccountToken": False}


def _pod_security() -> dict[str, Any]:
    """A plain pod's part: no token, and pod-wide defaults that also cover a container a webhook adds."""
    return {**_no_api_token(),
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}}


def _scratch_mount() -> dict[str, Any]:
    return {"name": SCRATCH_VOLUME, "mountPath": SCRATCH_PATH}


def _scratch_volume() -> dict[str, Any]:
    return {"name": SCRATCH_VOLUME, "emptyDir": {}}


def _storage_env(secret: str | None, settings: OperatorSettings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``env`` and ``envFrom`` for storage: the resource's Secret (or the install's default one),
    and the install's endpoint under a name a Secret's AWS_ENDPOINT_URL overrides."""
    chosen = secret or settings.default_storage_secret
    env = [{"name": DEFAULT_ENDPOINT, "value": settings.storage_endpoint}] if settings.storage_endpoint else []
    return env, ([{"secretRef": {"name": chosen}}] if chosen else [])


def job_payload(job: TrainingJob) -> str:
    """The TrainingJob as the trainer reads it: name, namespace and uid (which its checkpoints carry),
    and the spec; no status."""
    manifest = job.to_manifest()
    metadata = {key: manifest["metadata"][key] for key in ("name", "namespace", "uid") if key in manifest["metadata"]}
    return json.dumps({"apiVersion": manifest["apiVersion"], "kind": manifest["kind"], "metadata": metadata,
                       "spec": manifest["spec"]}, ensure_ascii=False)


def build_trainer_job(job: TrainingJob, flavor: Flavor, settings: OperatorSettings) -> dict[str, Any]:
    """The ``batch/v1`` Job of a TrainingJob; with ``nodes > 1`` an Indexed Job with a rendezvous.

    A pod whose flavor has G GPUs runs G ranks, one per GPU (the trainer's launcher starts them):
    the world is ``nodes x G``, and the node's rank is the pod's completion index.
    """
    nodes = job.spec.resources.nodes
    per_node = max(1, flavor.gpus)
    labels = {**MANAGED_BY, TRAINING_JOB_LABEL: job.name}
    env: list[dict[str, Any]] = [{"name": "GALLEY_TRAINING_JOB", "value": job_payload(job)},
                                 {"name": "PYTHONUNBUFFERED", "value": "1"}]
    if nodes * per_node > 1:
        env += [{"name": "WORLD_SIZE", "value": str(nodes * per_node)},
                {"name": "LOCAL_WORLD_SIZE", "value": str(per_node)}]
        node_rank: dict[str, Any] = ({"valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX}}} if nodes > 1
                                     else {"value": "0"})
        env.append({"name": "NODE_RANK", **node_rank})
        if per_node == 1:  # the container is the rank itself
            env.append({"name": "RANK", **node_rank})
        master = f"{trainer_name(job)}-0.{workers_service_name(job)}" if nodes > 1 else "127.0.0.1"
        env += [{"name": "MASTER_ADDR", "value": master},
                {"name": "MASTER_PORT", "value": str(settings.master_port)}]
    container: dict[str, Any] = {
        "name": "trainer",
        "image": settings.trainer_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", "galley.trainer"],
        "env": env,
        "resources": flavor.resources(),
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}, _scratch_mount()],
        "securityContext": _container_security(),
    }
    storage_env, env_from = _storage_env(job.spec.storage.secret_ref, settings)
    env += storage_env
    if env_from:
        container["envFrom"] = env_from
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": settings.trainer_grace_seconds,
        "containers": [container],
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory"}}, _scratch_volume()],
        **_pod_security(),
        **_placement(flavor, settings.trainer_service_account),
    }
    if nodes > 1:
        pod_spec["subdomain"] = workers_service_name(job)
    policy = job.spec.run_policy
    spec: dict[str, Any] = {
        "backoffLimit": policy.backoff_limit,
        "completions": nodes,
        "parallelism": nodes,
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    if nodes > 1:
        spec["completionMode"] = "Indexed"
    spec["podFailurePolicy"] = trainer_failure_policy()
    if policy.active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = policy.active_deadline_seconds
    if policy.ttl_seconds_after_finished is not None:
        spec["ttlSecondsAfterFinished"] = policy.ttl_seconds_after_finished
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": trainer_name(job), "labels": labels}, "spec": spec}


def trainer_failure_policy() -> dict[str, Any]:
    """Fail the Job at once when the trainer says the same spec will fail again (its permanent exit
    status), and do not count against backoffLimit a trainer that stopped on SIGTERM with a checkpoint
    (its preempted exit status), nor a pod that was evicted, preempted or drained.
    API servers before 1.26 (1.20 here) drop the field, and the Job retries as it always did."""
    return {"rules": [
        {"action": "FailJob", "onExitCodes": {"containerName": "trainer", "operator": "In",
                                              "values": [termination.EXIT_PERMANENT]}},
        {"action": "Ignore", "onExitCodes": {"containerName": "trainer", "operator": "In",
                                             "values": [termination.EXIT_PREEMPTED]}},
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]}


def build_workers_service(job: TrainingJob, settings: OperatorSettings) -> dict[str, Any]:
    """The headless Service that gives each worker of a multi-node job a DNS name."""
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": workers_service_name(job), "labels": {**MANAGED_BY, TRAINING_JOB_LABEL: job.name}},
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                 "selector": {TRAINING_JOB_LABEL: job.name},
                 "ports": [{"name": "rendezvous", "port": settings.master_port}]},
    }


def _predictor_container(service: OnlineService, model: Model, flavor: Flavor,
                         settings: OperatorSettings, name: str) -> dict[str, Any]:
    assert model.status is not None and model.status.uri
    threads = max(1, int(flavor.cpu_count))
    container: dict[str, Any] = {
        "name": name,
        "image": settings.predictor_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", "galley.predictor"],
        "args": ["--model", model.status.uri, "--host", "0.0.0.0", "--port", str(settings.predictor_port),
                 "--name", model.name, "--model-version", model.spec.version, "--threads", str(threads),
                 "--precision", service.spec.precision],
        "ports": [{"name": "http", "containerPort": settings.predictor_port, "protocol": "TCP"}],
        "resources": flavor.resources(),
        "volumeMounts": [_scratch_mount()],
        "securityContext": _container_security(),
    }
    storage_env, env_from = _storage_env(service.spec.storage.secret_ref or model.spec.storage.secret_ref, settings)
    if storage_env:
        container["env"] = storage_env
    if env_from:
        container["envFrom"] = env_from
    return container


def build_inference_service(service: OnlineService, model: Model, flavor: Flavor, settings: OperatorSettings,
                            running: bool) -> dict[str, Any]:
    """A KServe InferenceService; stopping is KServe's own ``serving.kserve.io/stop`` annotation.

    The predictor carries no pod-level securityContext: Knative refuses some of its fields unless
    a feature flag allows them, and the container's own one already meets ``restricted``."""
    predictor: dict[str, Any] = {
        "minReplicas": service.spec.replicas,
        "maxReplicas": service.spec.replicas,
        "containers": [_predictor_container(service, model, flavor, settings, "kserve-container")],
        "volumes": [_scratch_volume()],
        **_no_api_token(),
        **_placement(flavor, settings.predictor_service_account),
    }
    return {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": service.name, "labels": {**MANAGED_BY, SERVICE_LABEL: service.name},
                     "annotations": {KSERVE_STOP: "false" if running else "true"}},
        "spec": {"predictor": predictor},
    }


STARTUP_SECONDS = 900
"""How long a raw predictor may take to download and load its package before the kubelet restarts it
(a multi-GB package over a slow link); liveness starts counting only after that."""
STARTUP_PERIOD_SECONDS = 5

TEMPLATE_HASH = "galley.dev/template-hash"
"""Pod template annotation: a digest of what the template was rendered from. A different digest
rolls the Deployment; the same one leaves it alone (fields defaulted by the API server do not count)."""
MODEL_URI = "galley.dev/model-uri"
"""Pod template annotation: the package the template's pods serve (what status.modelUri reports)."""


def build_deployment(service: OnlineService, model: Model, flavor: Flavor, settings: OperatorSettings,
                     running: bool) -> dict[str, Any]:
    """The raw path: a Deployment (zero replicas when stopped) whose template carries its digest."""
    assert model.status is not None and model.status.uri
    labels = {**MANAGED_BY, SERVICE_LABEL: service.name}
    container = _predictor_container(service, model, flavor, settings, "predictor")
    # The predictor listens once its package is downloaded and loaded: the startup probe gives that
    # STARTUP_SECONDS, and liveness counts only after it, so a large package is never restarted mid-download.
    container["startupProbe"] = {"httpGet": {"path": "/v2/health/live", "port": "http"},
                                 "periodSeconds": STARTUP_PERIOD_SECONDS,
                                 "failureThreshold": STARTUP_SECONDS // STARTUP_PERIOD_SECONDS}
    container["readinessProbe"] = {"httpGet": {"path": "/v2/health/ready", "port": "http"}, "periodSeconds": 5}
    container["livenessProbe"] = {"httpGet": {"path": "/v2/health/live", "port": "http"}, "periodSeconds": 10,
                                  "failureThreshold": 3}
    pod_spec: dict[str, Any] = {"containers": [container], "volumes": [_scratch_volume()], **_pod_security(),
                                **_placement(flavor, settings.predictor_service_account)}
    digest = hashlib.sha256(json.dumps(pod_spec, sort_keys=True).encode()).hexdigest()[:16]
    annotations = {TEMPLATE_HASH: digest, MODEL_URI: model.status.uri}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": predictor_name(service), "labels": labels},
        "spec": {"replicas": service.spec.replicas if running else 0,
                 "selector": {"matchLabels": {SERVICE_LABEL: service.name}},
                 "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod_spec}},
    }


def build_service(service: OnlineService) -> dict[str, Any]:
    """The raw path's Service in front of the predictor pods."""
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": predictor_name(service), "labels": {**MANAGED_BY, SERVICE_LABEL: service.name}},
        "spec": {"selector": {SERVICE_LABEL: service.name},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }


INGRESS_FIELDS = ("rules", "ingressClassName", "tls")
"""The Ingress spec fields Galley owns (compared and patched; others are left to whoever set them)."""


def build_ingress(service: OnlineService) -> dict[str, Any] | None:
    """``spec.expose.ingress`` as a networking.k8s.io/v1 Ingress to the predictor Service (the raw
    runtime's, or KServe's ``<name>-predictor``: both on port 80); None when not asked for."""
    exposure = service.spec.expose.ingress if service.spec.expose else None
    if exposure is None:
        return None
    backend = {"service": {"name": predictor_name(service), "port": {"number": 80}}}
    spec: dict[str, Any] = {"rules": [{"host": exposure.host, "http": {"paths": [
        {"path": "/", "pathType": "Prefix", "backend": backend}]}}]}
    if exposure.class_name:
        spec["ingressClassName"] = exposure.class_name
    if exposure.tls:
        spec["tls"] = [{"hosts": [exposure.host], "secretName": exposure.tls.secret_name}]
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": predictor_name(service), "labels": {**MANAGED_BY, SERVICE_LABEL: service.name}},
        "spec": spec,
    }


def external_url(service: OnlineService) -> str | None:
    """The URL clients outside the cluster use, where the service is exposed."""
    exposure = service.spec.expose.ingress if service.spec.expose else None
    if exposure is None:
        return None
    return f"{'https' if exposure.tls else 'http'}://{exposure.host}/"


def raw_url(service: OnlineService, namespace: str, settings: OperatorSettings) -> str:
    return f"http://{predictor_name(service)}.{namespace}.svc.{settings.cluster_domain}/"


def holds(current: Any, desired: Any) -> bool:
    """Whether ``current`` already has every field of ``desired`` with its value.

    Fields only ``current`` has are someone else's (KServe's webhook defaults a predictor's
    container name, ports and probes): comparing whole specs would patch them away on every
    reconcile. Lists are compared item by item and must be as long.
    """
    if isinstance(desired, dict):
        return isinstance(current, dict) and all(key in current and holds(current[key], value)
                                                 for key, value in desired.items())
    if isinstance(desired, list):
        return isinstance(current, list) and len(current) == len(desired) and \
            all(holds(c, d) for c, d in zip(current, desired, strict=True))
    return bool(current == desired)
