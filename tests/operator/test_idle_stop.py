"""Idle stop on a real API server: the operator asks the predictor pods how recently they were used.

No kubelet here: the test plays it, reporting the Deployment's pod Ready at 127.0.0.1, where a
real predictor serves the trained package on the port the operator renders into pods. A second
service's pod is reported at an address where nothing answers: it must count as busy.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from galley.testing.envtest import Envtest
from galley.testing.operator import eventually, operator_process
from galley.testing.processes import predictor
from tests.operator.conftest import Cluster, new_namespace
from tests.operator.test_services import make_predictor_pods_ready, online_service, ready_model

pytestmark = pytest.mark.envtest
IDLE_SECONDS = 6


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def test_idle_stop_reads_the_predictor_pods(envtest: Envtest, s3: Any, s3_endpoint: str, tmp_path: Path,
                                            trained_package: Path, food_photos: Any) -> None:
    cluster: Cluster = new_namespace(envtest, s3_endpoint, tmp_path)
    with predictor(str(trained_package)) as url:
        port = str(urlparse(url).port)
        with operator_process(envtest, cluster.namespace, cluster.log, {"GALLEY_PREDICTOR_PORT": port}):
            ready_model(cluster, s3, trained_package)
            idle = {"autoStop": {"idle": f"{IDLE_SECONDS}s"}, "runtime": "raw"}
            cluster.create(online_service("food-service", **idle))
            cluster.create(online_service("unreachable", **idle))
            make_predictor_pods_ready(cluster, "food-service", pod_ip="127.0.0.1")
            make_predictor_pods_ready(cluster, "unreachable", pod_ip="127.0.0.2")  # nothing listens there
            for name in ("food-service", "unreachable"):
                eventually(lambda n=name: cluster.condition("OnlineService", n, "Ready") == ("True", "Serving"),
                           message=cluster.operator_log)
            started = time.monotonic()

            # In use for three idle periods: it keeps running, and status shows the last use.
            photo = food_photos.holdout[0][0].read_bytes()
            with httpx.Client(base_url=url, timeout=60) as client:
                while time.monotonic() - started < 3 * IDLE_SECONDS:
                    answer = client.post("/", files={"images": ("photo.jpg", photo, "image/jpeg")})
                    assert answer.status_code == 200
                    time.sleep(1.5)
                    assert cluster.condition("OnlineService", "food-service", "Ready") == ("True", "Serving")
                last_use = _time(client.get("/api/activity").json()["lastPredictionTime"])
            assert last_use is not None

            # Unused: it stops for idleness, and the Deployment scales to zero.
            eventually(lambda: cluster.condition("OnlineService", "food-service", "Stopped")
                       == ("True", "IdleStopped"), timeout=30, message=cluster.operator_log)
            status = cluster.status("OnlineService", "food-service")
            recorded, stopped_at = _time(status.get("lastRequestTime")), _time(status.get("stoppedAt"))
            assert recorded == last_use.replace(microsecond=0)
            assert stopped_at is not None and IDLE_SECONDS <= (stopped_at - recorded).total_seconds() <= 20
            eventually(lambda: cluster.apps.read_namespaced_deployment(
                "food-service-predictor", cluster.namespace).spec.replicas == 0, message=cluster.operator_log)

            # The pod nobody can reach counts as busy: asked again after its idle time, still serving.
            busy_line = f"OnlineService {cluster.namespace}/unreachable: a predictor did not answer"
            seen = cluster.log.read_text().count(busy_line)
            eventually(lambda: cluster.log.read_text().count(busy_line) > seen, timeout=30,
                       message=cluster.operator_log)
            assert cluster.condition("OnlineService", "unreachable", "Ready") == ("True", "Serving")
            assert cluster.status("OnlineService", "unreachable").get("lastRequestTime") is None
            assert cluster.apps.read_namespaced_deployment("unreachable-predictor",
                                                           cluster.namespace).spec.replicas == 1


def _kserve_predictor_pod(cluster: Cluster, name: str, port: int) -> None:
    """Play KServe and the kubelet: a predictor pod of food-service, as KServe labels it, with the
    port Knative gives kserve-container, Running and Ready at 127.0.0.1."""
    cluster.core.create_namespaced_pod(cluster.namespace, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"serving.kserve.io/inferenceservice": "food-service",
                                              "component": "predictor"}},
        "spec": {"containers": [{"name": "kserve-container", "image": "predictor",
                                 "ports": [{"name": "user-port", "containerPort": port}]}]}})
    cluster.play_kubelet(name, {
        "phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
        "conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}]})


def test_kserve_idle_stop_with_two_replicas_keeps_serving_while_one_is_busy(
        envtest: Envtest, s3: Any, s3_endpoint: str, tmp_path: Path, trained_package: Path, food_photos: Any) -> None:
    """Each Ready replica is asked, not one replica through the Service: an unused replica must not
    stop a service whose other replica is in use. Two real predictors stand in for the replicas; the
    unused one is listed first, where asking one replica would land."""
    from kubernetes import client

    from galley.testing.envtest import apply_crds
    from tests.operator.test_services import KSERVE_CRD

    apply_crds(envtest.api, [KSERVE_CRD])
    cluster: Cluster = new_namespace(envtest, s3_endpoint, tmp_path)
    isvcs = ("serving.kserve.io", "v1beta1", cluster.namespace, "inferenceservices")
    try:
        with predictor(str(trained_package)) as busy_url, predictor(str(trained_package)) as idle_url, \
                operator_process(envtest, cluster.namespace, cluster.log):
            ready_model(cluster, s3, trained_package)
            cluster.create(online_service("food-service", runtime="kserve", replicas=2,
                                          autoStop={"idle": f"{IDLE_SECONDS}s"}))
            eventually(lambda: cluster.objects.get_namespaced_custom_object(*isvcs, "food-service"),
                       message=cluster.operator_log)
            _kserve_predictor_pod(cluster, "food-service-predictor-b-busy", int(urlparse(busy_url).port or 0))
            _kserve_predictor_pod(cluster, "food-service-predictor-a-idle", int(urlparse(idle_url).port or 0))
            cluster.objects.patch_namespaced_custom_object_status(*isvcs, "food-service", {"status": {
                "url": "http://food-service.example.com", "conditions": [{"type": "Ready", "status": "True"}]}})
            eventually(lambda: cluster.condition("OnlineService", "food-service", "Ready") == ("True", "Serving"),
                       message=cluster.operator_log)

            # One replica in use for three idle periods, the other never: it keeps serving.
            started = time.monotonic()
            photo = food_photos.holdout[0][0].read_bytes()
            with httpx.Client(base_url=busy_url, timeout=60) as busy:
                while time.monotonic() - started < 3 * IDLE_SECONDS:
                    assert busy.post("/", files={"images": ("photo.jpg", photo, "image/jpeg")}).status_code == 200
                    time.sleep(1.5)
                    assert cluster.condition("OnlineService", "food-service", "Ready") == ("True", "Serving")
                    annotations = cluster.objects.get_namespaced_custom_object(
                        *isvcs, "food-service")["metadata"]["annotations"]
                    assert annotations["serving.kserve.io/stop"] == "false"
            with httpx.Client(base_url=idle_url, timeout=30) as idle:
                assert idle.get("/api/activity").json()["predictions"] == 0

            # Neither in use: it stops for idleness.
            eventually(lambda: cluster.condition("OnlineService", "food-service", "Stopped")
                       == ("True", "IdleStopped"), timeout=30, message=cluster.operator_log)
            eventually(lambda: cluster.objects.get_namespaced_custom_object(
                *isvcs, "food-service")["metadata"]["annotations"]["serving.kserve.io/stop"] == "true", timeout=15)
    finally:
        client.ApiextensionsV1Api(envtest.api).delete_custom_resource_definition(KSERVE_CRD["metadata"]["name"])
        eventually(lambda: not any(c.metadata.name == KSERVE_CRD["metadata"]["name"] for c in
                                   client.ApiextensionsV1Api(envtest.api).list_custom_resource_definition().items))
