"""``galley get|describe|stop|start --cluster`` against the real API server, with the operator running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from galley.testing.operator import eventually
from tests.operator.conftest import Cluster
from tests.operator.test_services import online_service
from tests.operator.test_trainingjobs import trainer_pod, training_job

pytestmark = pytest.mark.envtest


def galley(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it: kubeconfig from the environment, as kubectl reads it."""
    command = str(Path(sys.executable).with_name("galley"))
    return subprocess.run([command, *args, "--cluster", "-n", cluster.namespace],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "KUBECONFIG": str(cluster.env.kubeconfig)})


def test_get_and_describe_show_status_conditions_and_events(cluster: Cluster, s3: Any) -> None:
    cluster.create(training_job())
    cluster.create(online_service(model="no-such-model"))
    cluster.play_kubelet(trainer_pod(cluster, "food-resnet50"), {"phase": "Running"})
    eventually(lambda: cluster.status("TrainingJob", "food-resnet50").get("phase") == "Running",
               message=cluster.operator_log)

    listed = galley(cluster, "get")
    assert listed.returncode == 0, listed.stderr
    assert "trainingjobs:" in listed.stdout and "onlineservices:" in listed.stdout
    job_row = next(line for line in listed.stdout.splitlines() if line.startswith("food-resnet50"))
    assert "Running" in job_row
    assert "food-service" in galley(cluster, "get", "osvc").stdout

    described = galley(cluster, "describe", "tj/food-resnet50")
    assert described.returncode == 0, described.stderr
    assert "Conditions:" in described.stdout and "JobCreated" in described.stdout
    assert "Events:" in described.stdout and "Running" in described.stdout.split("Events:")[1]
    service = galley(cluster, "describe", "osvc/food-service").stdout
    assert "ModelNotFound" in service


def test_stop_and_start_change_what_kubectl_would(cluster: Cluster) -> None:
    cluster.create(online_service(model="no-such-model"))
    stopped = galley(cluster, "stop", "food-service")
    assert stopped.returncode == 0, stopped.stderr
    assert cluster.get("OnlineService", "food-service")["spec"]["stopped"] is True
    started = galley(cluster, "start", "food-service")
    assert started.returncode == 0, started.stderr
    body = cluster.get("OnlineService", "food-service")
    assert body["spec"]["stopped"] is False
    assert body["metadata"]["annotations"]["galley.dev/start"]


def test_unknown_names_and_empty_namespaces_are_said_plainly(cluster: Cluster) -> None:
    empty = galley(cluster, "get")
    assert empty.returncode == 0 and "No resources found" in empty.stdout
    missing = galley(cluster, "start", "nope")
    assert missing.returncode != 0 and "OnlineService 'nope' not found" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_delete_removes_the_resource_and_get_o_json_shows_whole_objects(cluster: Cluster) -> None:
    cluster.create(online_service(model="no-such-model"))
    listed = galley(cluster, "get", "osvc", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    items = json.loads(listed.stdout)["items"]
    assert [i["metadata"]["name"] for i in items] == ["food-service"] and items[0]["metadata"]["uid"]
    deleted = galley(cluster, "delete", "osvc/food-service")
    assert deleted.returncode == 0, deleted.stderr
    assert "OnlineService food-service deleted" in deleted.stdout
    gone = cluster.objects.list_namespaced_custom_object("galley.dev", "v1alpha1", cluster.namespace,
                                                         "onlineservices")["items"]
    assert gone == []
    again = galley(cluster, "delete", "osvc/food-service")
    assert again.returncode != 0 and "not found" in again.stderr
