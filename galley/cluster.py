"""Galley resources in a namespace of a Kubernetes cluster, read and changed like the embedded store.

``galley get|describe|logs|stop|start|delete|predict --cluster`` use this instead of the local
state folder, so the same tables, conditions, events and score tables show for both backends.
It logs in with the kubeconfig, as kubectl does; stop and start change only what a user would
with kubectl (``spec.stopped``, the ``galley.dev/start`` annotation), and the operator does the
rest. Logs come from the pods (``kubectl logs``); predictions reach an in-cluster service through
the API server's service proxy, so no port-forward is needed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from pydantic import ValidationError

from galley.api.flavors import FlavorCatalogue
from galley.api.meta import GROUP, VERSION
from galley.api.resources import Model, OnlineService, Resource, TrainingJob
from galley.control.services import start_request, stop_request
from galley.operator.builders import SERVICE_LABEL, TRAINING_JOB_LABEL

FLAVORS_LABEL = "galley.dev/flavors"
"""The label the chart puts on its flavor catalogue ConfigMap (``galley validate --cluster``)."""

SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
R = TypeVar("R", bound=Resource)
log = logging.getLogger("galley.cluster")


def storage_unreadable_here(uri: str) -> str | None:
    """Why ``uri`` is not read from this process, or None. S3 is read only where the environment
    says how: guessing would mean waiting on an endpoint that may not be reachable from here at all."""
    from galley import storage

    if not storage.is_s3(uri) or storage.s3_configured():
        return None
    return f"no storage settings here (AWS_* in the environment; the chart's console.storageSecret): {uri} is not read"


def _in_a_pod_without_kubeconfig() -> bool:
    kubeconfig = os.environ.get("KUBECONFIG", str(Path.home() / ".kube" / "config"))
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and not any(
        Path(p).is_file() for p in kubeconfig.split(os.pathsep) if p)


class ClusterStore:
    """One namespace of the cluster in the kubeconfig (its current context unless told otherwise)."""

    def __init__(self, namespace: str | None = None, context: str | None = None) -> None:
        self.namespace_given = namespace is not None
        if _in_a_pod_without_kubeconfig():  # the chart's console: its ServiceAccount, its namespace by default
            config.load_incluster_config()
            self.api = client.ApiClient()
            namespace = namespace or Path(SERVICE_ACCOUNT_NAMESPACE).read_text(encoding="utf-8").strip()
        else:
            self.api = config.new_client_from_config(context=context)
        if namespace is None:
            contexts, current = config.list_kube_config_contexts()
            chosen = next((c for c in contexts if c["name"] == context), current) if context else current
            namespace = (chosen.get("context") or {}).get("namespace") or "default"
        self.namespace = namespace
        self.home = f"namespace {namespace!r} of the cluster"
        self.empty_hint = "apply some with `kubectl apply -f`"
        self._objects = client.CustomObjectsApi(self.api)

    def all(self, cls: type[R]) -> list[R]:
        listed: Any = self._objects.list_namespaced_custom_object(GROUP, VERSION, self.namespace, cls.PLURAL)
        items: list[dict[str, Any]] = listed["items"]
        return [found for item in items if (found := self._validated(cls, item)) is not None]

    def get(self, cls: type[R], name: str) -> R | None:
        try:
            item: Any = self._objects.get_namespaced_custom_object(GROUP, VERSION, self.namespace, cls.PLURAL, name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return self._validated(cls, item)

    @staticmethod
    def _validated(cls: type[R], item: dict[str, Any]) -> R | None:
        try:
            return cls.model_validate(item)
        except ValidationError as error:  # passed the CRD schema, not the model: the operator says why
            log.warning("%s %s does not validate (%s); `kubectl describe` shows its conditions",
                        cls.KIND, (item.get("metadata") or {}).get("name"), error.errors()[0]["msg"])
            return None

    def events(self, kind: str, name: str) -> list[dict[str, str]]:
        """Kubernetes Events about the resource, oldest first, in the local store's shape."""
        found = client.CoreV1Api(self.api).list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.kind={kind},involvedObject.name={name}").items
        rows = []
        for event in found:
            when = event.last_timestamp or event.event_time or event.metadata.creation_timestamp
            rows.append({"time": f"{when:%Y-%m-%dT%H:%M:%SZ}" if when else "-", "reason": event.reason or "",
                         "message": event.message or ""})
        return sorted(rows, key=lambda row: row["time"])

    def stop(self, name: str) -> str:
        self._require_service(name)
        self._patch(name, stop_request())
        return f"OnlineService {name} stopping (spec.stopped: true); `galley start --cluster {name}` starts it again"

    def start(self, name: str) -> str:
        self._require_service(name)
        self._patch(name, start_request())
        return f"OnlineService {name} starting; the operator sets a new stopAt once it is ready"

    def delete(self, reference: str) -> str:
        """``kubectl delete``: the API server's garbage collector removes what Galley made for it
        (every child carries an owner reference); storage is never touched."""
        from galley.commands import lookup

        resource = lookup(self, reference)
        self._objects.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, resource.PLURAL, resource.name)
        return f"{resource.KIND} {resource.name} deleted; the operator's Jobs, Deployments and Services for it go too"

    def _require_service(self, name: str) -> None:
        if self.get(OnlineService, name) is None:
            raise LookupError(f"OnlineService {name!r} not found in {self.home}")

    def _patch(self, name: str, body: dict[str, Any]) -> None:
        self._objects.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, OnlineService.PLURAL, name, body)

    # -- logs, predictions, flavors ---------------------------------------------------------------

    def logs(self, reference: str, tail: int | None = None) -> str:
        """The log of a TrainingJob's first trainer pod (rank 0), or of a service's predictor pod."""
        from galley.commands import lookup

        resource = lookup(self, reference)
        if isinstance(resource, Model):
            raise LookupError(f"a Model has no log; `galley describe --cluster model/{resource.name}` shows why "
                              "it is or is not Ready")
        label = TRAINING_JOB_LABEL if isinstance(resource, TrainingJob) else SERVICE_LABEL
        pods: list[Any] = client.CoreV1Api(self.api).list_namespaced_pod(
            self.namespace, label_selector=f"{label}={resource.name}").items
        if not pods:
            where = f"; its log is also in {resource.logs_uri.rstrip('/')}/training.log" \
                if isinstance(resource, TrainingJob) else ""
            return f"{resource.KIND} {resource.name} has no pod now{where}\n"
        pod = min(pods, key=lambda p: (_rank(p), -(p.metadata.creation_timestamp.timestamp()
                                                    if p.metadata.creation_timestamp else 0)))
        text: str | None = client.CoreV1Api(self.api).read_namespaced_pod_log(pod.metadata.name, self.namespace,
                                                                                tail_lines=tail)
        return text or ""  # a pod whose container has not started has no log yet

    def predict(self, name: str, body: bytes, content_type: str) -> bytes:
        """POST ``body`` to a running service's predictor and return its answer."""
        status, _, data = self.service_request(name, "POST", "", body, {"Content-Type": content_type,
                                                                         "Accept": "application/json"})
        if status >= 400:
            raise RuntimeError(f"{name} answered {status}: {data.decode(errors='replace')}")
        return data

    def service_request(self, name: str, method: str, path: str, body: bytes | None = None,
                        headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
        """One HTTP request to a running service's predictor: (status, content type, body).

        Straight to the predictor Service where this process runs in the cluster; otherwise through
        the API server's proxy to it, with the kubeconfig's identity. ``path`` must already be one of
        the predictor's routes (:func:`galley.console.proxy.predictor_path` for what users send)."""
        from galley.commands import exchange, running_url

        running_url(self, name, f"`galley start --cluster {name}` starts it")  # refuses a stopped service
        headers = headers or {}
        path = path.lstrip("/")
        # Always the predictor's own Service, never status.url: an Ingress host is the user's to
        # choose, and a console in the cluster must not be sent wherever it points.
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            return exchange(f"http://{name}-predictor.{self.namespace}.svc/{path}", method, body, headers, direct=True)
        proxy = f"/api/v1/namespaces/{self.namespace}/services/{name}-predictor:80/proxy/{path}"
        _, full, signed, _, _ = self.api.param_serialize(method, proxy, header_params=headers,
                                                          auth_settings=["BearerToken"])
        # The client's own request layer rebuilds multipart bodies from form fields; send the bytes as they are.
        # No redirect is followed: a predictor's answer goes back as it is, never to another address.
        response = self.api.rest_client.pool_manager.request(method, full, body=body, headers=signed, timeout=60,
                                                             redirect=False)
        return response.status, response.headers.get("Content-Type", ""), response.data

    def create(self, resource: Resource) -> str:
        """``kubectl create``: the API server refuses a taken name (409); the operator does the rest."""
        manifest = resource.to_manifest()
        manifest.pop("status", None)
        manifest["metadata"]["namespace"] = self.namespace
        self._objects.create_namespaced_custom_object(GROUP, VERSION, self.namespace, resource.PLURAL, manifest)
        return f"{resource.KIND} {resource.name} created in {self.home}"

    def storage_credentials(self, resource: Resource) -> dict[str, str] | None:
        """None: storage is read with this process's environment. Secrets are never read from the
        cluster here, so a reader of the console needs no access to them."""
        return None

    def storage_unreadable(self, uri: str) -> str | None:
        return storage_unreadable_here(uri)

    def dataset_unreadable(self, uri: str) -> str | None:
        """A local path is refused: on a cluster it names a folder of the trainer's pod, and read
        here it would be this process's own files (a console in a pod would show its own disk)."""
        from galley import storage

        if not storage.is_s3(uri):
            return (f"{uri} is not an s3:// location: on a cluster a local path is read inside the trainer's pod, "
                    "and the console does not read its own disk; use galley dataset inspect where the files are")
        return storage_unreadable_here(uri)

    def flavor_catalogue(self) -> tuple[FlavorCatalogue, str]:
        """The catalogue the chart installed (the ConfigMap labelled ``galley.dev/flavors``), and
        where it was found; in this namespace when one was given, else anywhere in the cluster."""
        import yaml

        core = client.CoreV1Api(self.api)
        selector = f"{FLAVORS_LABEL}=catalogue"
        found: list[Any] = (core.list_namespaced_config_map(self.namespace, label_selector=selector).items
                 if self.namespace_given else core.list_config_map_for_all_namespaces(label_selector=selector).items)
        if len(found) != 1:
            names = ", ".join(f"{c.metadata.namespace}/{c.metadata.name}" for c in found) or "none"
            raise LookupError(f"expected one ConfigMap labelled {selector} (the Galley chart installs it); "
                              f"found {names}{'' if found else '; is Galley installed?'} (-n chooses a namespace)")
        config_map = found[0]
        data = yaml.safe_load((config_map.data or {}).get("flavors.yaml", "")) or {}
        items = data.get("flavors", []) if isinstance(data, dict) else data
        where = f"ConfigMap {config_map.metadata.namespace}/{config_map.metadata.name}"
        if not isinstance(items, list):
            raise LookupError(f"{where}: expected a list of flavors under 'flavors' in flavors.yaml")
        try:
            return FlavorCatalogue.from_documents(items), where
        except ValueError as error:
            raise LookupError(f"{where}: {error}") from error


def _rank(pod: Any) -> int:
    """A trainer pod's rank (its Job completion index); 0 for pods that have none."""
    annotations = pod.metadata.annotations or {}
    return int(annotations.get("batch.kubernetes.io/job-completion-index", 0))
