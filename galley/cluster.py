"""Galley resources in a namespace of a Kubernetes cluster, read and changed like the embedded store.

``galley get|describe|stop|start --cluster`` use this instead of the local state folder, so the
same tables, conditions and events show for both backends. It logs in with the kubeconfig, as
kubectl does; stop and start change only what a user would with kubectl (``spec.stopped``, the
``galley.dev/start`` annotation), and the operator does the rest.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from pydantic import ValidationError

from galley.api.meta import GROUP, VERSION
from galley.api.resources import OnlineService, Resource
from galley.control.services import start_request, stop_request

R = TypeVar("R", bound=Resource)
log = logging.getLogger("galley.cluster")


class ClusterStore:
    """One namespace of the cluster in the kubeconfig (its current context unless told otherwise)."""

    def __init__(self, namespace: str | None = None, context: str | None = None) -> None:
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
        from galley.local.commands import lookup

        resource = lookup(self, reference)
        self._objects.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, resource.PLURAL, resource.name)
        return f"{resource.KIND} {resource.name} deleted; the operator's Jobs, Deployments and Services for it go too"

    def _require_service(self, name: str) -> None:
        if self.get(OnlineService, name) is None:
            raise LookupError(f"OnlineService {name!r} not found in {self.home}")

    def _patch(self, name: str, body: dict[str, Any]) -> None:
        self._objects.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, OnlineService.PLURAL, name, body)
