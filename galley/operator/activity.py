"""Reading how recently a cluster predictor served a prediction, for ``autoStop.idle``.

Every Ready predictor pod is asked directly, at the IP address in its own status and the port
in its own spec, so one busy replica keeps the service running: the raw runtime's pods by
Galley's label, KServe's by the labels KServe puts on an InferenceService's predictor pods
(asking its Service would reach one replica, and an unused one could stop a busy service).
Nothing else is asked: no DNS name, no redirect, no proxy (:func:`galley.control.activity.ask_activity`).
Read fresh at each decision (no cache: a stale answer could stop a service that was just used);
any pod that does not answer makes the reading unknown, which counts as busy.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any
from urllib.parse import quote

from galley.api.resources import OnlineService
from galley.control.activity import UNKNOWN, Activity, read_activity
from galley.operator import builders, kube
from galley.operator.settings import OperatorSettings

log = logging.getLogger("galley.operator")
ASK_TIMEOUT_SECONDS = 2.0
KSERVE_SERVICE_LABEL = "serving.kserve.io/inferenceservice"
KSERVE_CONTAINER = "kserve-container"


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _http_port(pod: dict[str, Any], default: int) -> int:
    """The pod's own predictor port: the one named ``http``, else the first of KServe's container
    (Knative renames it ``user-port``); a pod rendered before a settings change keeps its port."""
    containers = (pod.get("spec") or {}).get("containers") or []
    for container in containers:
        for port in container.get("ports") or []:
            if port.get("name") == "http":
                return int(port["containerPort"])
    for container in containers:
        if container.get("name") == KSERVE_CONTAINER and container.get("ports"):
            return int(container["ports"][0]["containerPort"])
    return default


def _pod_ip(pod: dict[str, Any]) -> str | None:
    """The pod's IP address from its status; None when it has none (or it is not an address)."""
    value = (pod.get("status") or {}).get("podIP")
    try:
        return str(ipaddress.ip_address(value)) if isinstance(value, str) else None
    except ValueError:
        return None


def pod_endpoints(service: OnlineService, namespace: str, kserve: bool,
                  settings: OperatorSettings) -> list[tuple[str, int]]:
    """(pod IP, port) of each Ready predictor pod of ``service``."""
    if kserve:
        selector = f"{KSERVE_SERVICE_LABEL}={service.name},component=predictor"
    else:
        selector = f"{builders.SERVICE_LABEL}={service.name}"
    listing = kube.read(f"/api/v1/namespaces/{namespace}/pods?labelSelector={quote(selector)}") or {}
    endpoints = []
    for pod in listing.get("items") or []:
        ip = _pod_ip(pod)
        if ip is not None and _ready(pod):
            endpoints.append((ip, _http_port(pod, settings.predictor_port)))
    return endpoints


def observe_activity(service: OnlineService, namespace: str, kserve: bool, settings: OperatorSettings) -> Activity:
    """The predictor's activity; UNKNOWN (busy) when any replica cannot be asked."""
    endpoints = pod_endpoints(service, namespace, kserve, settings)
    if not endpoints:
        return UNKNOWN
    activity = read_activity(endpoints, timeout=ASK_TIMEOUT_SECONDS)
    if not activity.known:
        log.info("OnlineService %s/%s: a predictor did not answer %s; counting it as busy", namespace,
                 service.name, "/api/activity")
    return activity
