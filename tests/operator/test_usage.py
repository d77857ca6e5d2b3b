"""What still bills, on a real API server: status.usage as the operator keeps it across stops, starts
and an operator restart, kubectl's USAGE column beside `galley get --cluster`, and its last line."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from galley.testing.envtest import Envtest
from galley.testing.operator import eventually, operator_process
from tests.operator.conftest import Cluster, new_namespace
from tests.operator.test_cli_on_cluster import galley
from tests.operator.test_services import make_predictor_pods_ready, online_service, ready_model
from tests.operator.test_trainingjobs import trainer_pod, training_job

pytestmark = pytest.mark.envtest
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def kubectl_column(cluster: Cluster, plural: str, name: str, column: str) -> Any:
    """A printer column's cell, as `kubectl get` receives it from the API server."""
    table = cluster.env.get_json(f"/apis/galley.dev/v1alpha1/namespaces/{cluster.namespace}/{plural}", TABLE)
    index = [c["name"] for c in table["columnDefinitions"]].index(column)
    return next(row["cells"][index] for row in table["rows"] if row["cells"][0] == name)


def galley_column(cluster: Cluster, kind: str, name: str, column: str) -> tuple[str, str]:
    """A cell of `galley get KIND --cluster`, and the line the output ends with."""
    lines = galley(cluster, "get", kind).stdout.splitlines()
    header = re.split(r"\s{3,}", lines[0])
    row = next(re.split(r"\s{3,}", line) for line in lines if line.startswith(name + " "))
    return row[header.index(column)], lines[-1]


def usage_of(cluster: Cluster, kind: str, name: str) -> dict[str, Any]:
    return dict(cluster.status(kind, name).get("usage") or {})


def test_a_service_counts_while_ready_through_an_operator_restart_and_stops_counting(
        envtest: Envtest, s3_endpoint: str, s3: Any, trained_package: Path, tmp_path: Path) -> None:
    cluster = new_namespace(envtest, s3_endpoint, tmp_path)
    with operator_process(envtest, cluster.namespace, cluster.log):
        ready_model(cluster, s3, trained_package)
        cluster.create(online_service(runtime="raw", flavor="cpu-2c-8g", replicas=2))
        eventually(lambda: cluster.condition("OnlineService", "food-service", "Ready") == ("False", "RollingOut"),
                   message=cluster.operator_log)
        assert "usage" not in cluster.status("OnlineService", "food-service")  # rolling out bills nothing yet
        assert galley(cluster, "get").stdout.splitlines()[-1] == "nothing running"
        before_ready = time.monotonic()
        make_predictor_pods_ready(cluster, "food-service")
        eventually(lambda: cluster.condition("OnlineService", "food-service", "Ready") == ("True", "Serving"),
                   message=cluster.operator_log)
        seen_ready = time.monotonic()
        opened = usage_of(cluster, "OnlineService", "food-service")
        assert opened["cores"] == 4 and opened["runningSeconds"] == 0 and opened["countedUntil"]
        _, last_line = galley_column(cluster, "osvc", "food-service", "USAGE")
        assert last_line == "running now: 0 training jobs (0 GPUs), 1 service (4 cores)"
        for _ in range(2):  # reconciles that run again, soon, add nothing and write nothing
            cluster.reconciled("OnlineService", "food-service")
        assert usage_of(cluster, "OnlineService", "food-service") == opened

    # The operator is down for a while; the predictor serves on (its pods do not stop), so it counts.
    down = 4
    time.sleep(down)
    with operator_process(envtest, cluster.namespace, cluster.log):
        cluster.reconciled("OnlineService", "food-service")
        before_stop = time.monotonic()
        cluster.patch("OnlineService", "food-service", {"spec": {"stopped": True}})
        eventually(lambda: cluster.status("OnlineService", "food-service").get("phase") == "Stopped",
                   message=cluster.operator_log)
        seen_stopped = time.monotonic()
        closed = usage_of(cluster, "OnlineService", "food-service")
        assert "countedUntil" not in closed and "cores" not in closed
        ran = closed["runningSeconds"]
        assert ran >= down and before_stop - seen_ready - 1 <= ran <= seen_stopped - before_ready + 1, closed
        assert closed["coreSeconds"] == 4 * ran and closed["gpuSeconds"] == 0
        galley_cell, last_line = galley_column(cluster, "osvc", "food-service", "USAGE")
        assert galley_cell == kubectl_column(cluster, "onlineservices", "food-service", "Usage") == closed["summary"]
        assert last_line == "nothing running"

        time.sleep(2)  # stopped time is not counted, and a later reconcile adds nothing
        assert usage_of(cluster, "OnlineService", "food-service") == closed
        assert usage_of(cluster, "OnlineService", "food-service") == \
            dict(cluster.reconciled("OnlineService", "food-service")["status"]["usage"])


def test_a_training_job_counts_gpu_seconds_while_its_trainer_runs(cluster: Cluster) -> None:
    cluster.create(training_job())  # gpu-v100-1 on one node
    pod = trainer_pod(cluster, "food-resnet50")
    assert galley(cluster, "get").stdout.splitlines()[-1] == "nothing running"  # waiting for a node is free
    before_running = time.monotonic()
    cluster.play_kubelet(pod, {"phase": "Running"})
    eventually(lambda: cluster.status("TrainingJob", "food-resnet50").get("phase") == "Running",
               message=cluster.operator_log)
    seen_running = time.monotonic()
    assert usage_of(cluster, "TrainingJob", "food-resnet50")["gpus"] == 1
    assert galley(cluster, "get").stdout.splitlines()[-1] == "running now: 1 training job (1 GPU), 0 services (0 cores)"
    time.sleep(2)
    before_done = time.monotonic()
    cluster.play_kubelet(pod, {"phase": "Succeeded"})
    eventually(lambda: cluster.status("TrainingJob", "food-resnet50").get("phase") == "Succeeded",
               message=cluster.operator_log)
    seen_done = time.monotonic()
    usage = usage_of(cluster, "TrainingJob", "food-resnet50")
    ran = usage["runningSeconds"]
    assert before_done - seen_running - 1 <= ran <= seen_done - before_running + 1, usage
    assert usage["gpuSeconds"] == ran and usage["coreSeconds"] == 8 * ran and "countedUntil" not in usage
    galley_cell, last_line = galley_column(cluster, "tj", "food-resnet50", "USAGE")
    assert galley_cell == kubectl_column(cluster, "trainingjobs", "food-resnet50", "Usage") == usage["summary"]
    assert usage["summary"].endswith(" GPU-h") and last_line == "nothing running"
