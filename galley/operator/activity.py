"""Reading how recently a cluster predictor served a prediction, for ``autoStop.idle``.

Raw runtime: every Ready predictor pod is asked directly (pod IP and its ``http`` port), so one
busy replica keeps the service running. KServe: its predictor Service is asked. Read fresh at
each decision (no cache: a stale answer could stop a service that was just used); any pod or
Service that does not answer makes the reading unknown, which counts as busy.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from galley.api.resources import OnlineService
from galley.control.activity import UNKNOWN, Activity, read_activity
from galley.operator import builders, kube
from galley.operator.settings import OperatorSettings

log = logging.getLogger("galley.operator")
ASK_TIMEOUT_SECONDS = 2.0


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _http_port(pod: dict[str, Any], default: int) -> int:
    """The pod's own ``http`` port: a pod rendered before a settings change keeps its port."""
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == "http":
                return int(port["containerPort"])
    return default


def pod_urls(service: OnlineService, namespace: str, settings: OperatorSettings) -> list[str]:
    """``http://<pod IP>:<port>/`` of each Ready predictor pod of a raw-runtime service."""
    selector = quote(f"{builders.SERVICE_LABEL}={service.name}")
    listing = kube.read(f"/api/v1/namespaces/{namespace}/pods?labelSelector={selector}") or {}
    return [f"http://{pod['status']['podIP']}:{_http_port(pod, settings.predictor_port)}/"
            for pod in listing.get("items") or [] if _ready(pod) and (pod.get("status") or {}).get("podIP")]


def observe_activity(service: OnlineService, namespace: str, kserve: bool, settings: OperatorSettings) -> Activity:
    """The predictor's activity; UNKNOWN (busy) when any replica cannot be asked."""
    if kserve:
        urls = [f"http://{service.name}-predictor.{namespace}.svc.{settings.cluster_domain}/"]
    else:
        urls = pod_urls(service, namespace, settings)
    if not urls:
        return UNKNOWN
    activity = read_activity(urls, timeout=ASK_TIMEOUT_SECONDS)
    if not activity.known:
        log.info("OnlineService %s/%s: a predictor did not answer %s; counting it as busy", namespace,
                 service.name, "/api/activity")
    return activity
