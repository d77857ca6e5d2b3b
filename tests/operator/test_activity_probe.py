"""Which pods the operator asks for activity, and where: each Ready predictor pod, at its own IP and port.

The pod listing stands in for the API server's (the envtest test of idle stop runs the whole
loop); the predictors are real HTTP servers on loopback, so the asking itself is real.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from galley.api.resources import OnlineService
from galley.operator import activity, kube
from galley.operator.settings import OperatorSettings
from tests.control.test_activity import json_answer, server

SETTINGS = OperatorSettings(predictor_port=8080)


def service(runtime: str) -> OnlineService:
    return OnlineService.model_validate({
        "apiVersion": "galley.dev/v1alpha1", "kind": "OnlineService", "metadata": {"name": "food"},
        "spec": {"model": "food-model", "runtime": runtime, "autoStop": {"idle": "15m"}}})


def pod(ip: Any, ready: bool = True, ports: list[dict[str, Any]] | None = None,
        container: str = "predictor") -> dict[str, Any]:
    sidecar = {"name": "queue-proxy", "ports": [{"name": "http-queueadm", "containerPort": 8022}]}
    return {"spec": {"containers": [sidecar, {"name": container, "ports": ports or []}]},
            "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


@pytest.fixture
def listing(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What ``kube.read`` answers; ``listing["asked"]`` records the paths read."""
    state: dict[str, Any] = {"items": [], "asked": []}

    def read(path: str) -> dict[str, Any]:
        state["asked"].append(path)
        return {"items": state["items"]}

    monkeypatch.setattr(kube, "read", read)
    return state


def selectors(listing: dict[str, Any]) -> list[str]:
    """The label selectors of the pod listings read (all in namespace ns)."""
    parts = [urlsplit(path) for path in listing["asked"]]
    assert {part.path for part in parts} == {"/api/v1/namespaces/ns/pods"}
    return [parse_qs(part.query)["labelSelector"][0] for part in parts]


def test_raw_pods_are_asked_at_their_ip_and_named_port(listing: dict[str, Any]) -> None:
    listing["items"] = [pod("10.1.0.4", ports=[{"name": "http", "containerPort": 9000}]),
                        pod("10.1.0.5"),  # no port named http: the setting's
                        pod("10.1.0.6", ready=False), pod(None), pod("evil.example.com"), pod("127.1")]
    assert activity.pod_endpoints(service("raw"), "ns", False, SETTINGS) == [("10.1.0.4", 9000), ("10.1.0.5", 8080)]
    assert selectors(listing) == ["galley.dev/online-service=food"]


def test_kserve_predictor_pods_are_asked_each_not_the_service(listing: dict[str, Any]) -> None:
    """Knative renames the container's port ``user-port``: the first port of kserve-container is the predictor's."""
    listing["items"] = [pod("10.2.0.7", ports=[{"name": "user-port", "containerPort": 8080}],
                            container="kserve-container"),
                        pod("fd00::9", ports=[{"name": "user-port", "containerPort": 8081}],
                            container="kserve-container")]
    assert activity.pod_endpoints(service("kserve"), "ns", True, SETTINGS) == [("10.2.0.7", 8080), ("fd00::9", 8081)]
    assert selectors(listing) == ["serving.kserve.io/inferenceservice=food,component=predictor"]


def test_one_busy_kserve_replica_of_two_is_seen(listing: dict[str, Any]) -> None:
    unused = b'{"lastPredictionTime": null, "predictions": 0}'
    with server(json_answer(unused)) as (idle_port, idle_asked), server(json_answer()) as (busy_port, busy_asked):
        listing["items"] = [pod("127.0.0.1", ports=[{"containerPort": port}], container="kserve-container")
                            for port in (idle_port, busy_port)]
        seen = activity.observe_activity(service("kserve"), "ns", True, SETTINGS)
    assert seen.known and seen.last_prediction is not None
    assert idle_asked == busy_asked == ["/api/activity"]


def test_no_ready_pod_counts_as_busy(listing: dict[str, Any]) -> None:
    listing["items"] = [pod("10.1.0.4", ready=False)]
    assert not activity.observe_activity(service("raw"), "ns", False, SETTINGS).known
