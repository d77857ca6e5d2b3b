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


def test_validate_reads_the_flavor_catalogue_the_chart_installed(cluster: Cluster, tmp_path: Path) -> None:
    manifest = tmp_path / "job.yaml"
    job = training_job()
    job["spec"]["resources"] = {"flavor": "gpu-t4-1"}
    manifest.write_text(json.dumps(job))
    missing = galley(cluster, "validate", "-f", str(manifest))
    assert missing.returncode == 1
    assert "expected one ConfigMap labelled galley.dev/flavors=catalogue" in missing.stderr
    assert "is Galley installed?" in missing.stderr

    flavors = {"flavors": [{"name": "gpu-t4-1", "cpu": "4", "memory": "16Gi", "gpus": 1, "gpuProduct": "Tesla-T4"}]}
    cluster.core.create_namespaced_config_map(cluster.namespace, {
        "metadata": {"name": "galley-operator-flavors", "labels": {"galley.dev/flavors": "catalogue"}},
        "data": {"flavors.yaml": json.dumps(flavors)}})
    valid = galley(cluster, "validate", "-f", str(manifest))
    assert valid.returncode == 0, valid.stderr
    assert "TrainingJob/food-resnet50: valid" in valid.stdout
    assert f"ConfigMap {cluster.namespace}/galley-operator-flavors" in valid.stderr
    job["spec"]["resources"] = {"flavor": "gpu-a100-8"}
    manifest.write_text(json.dumps(job))
    refused = galley(cluster, "validate", "-f", str(manifest))
    assert refused.returncode == 1 and "unknown flavor 'gpu-a100-8'" in refused.stderr
    assert "gpu-t4-1" in refused.stderr


def test_open_logs_and_port_forward_say_how_to_reach_what(cluster: Cluster, tmp_path: Path) -> None:
    cluster.create(online_service(model="no-such-model"))
    not_running = galley(cluster, "open", "food-service", "--no-browser")
    assert not_running.returncode == 1 and "OnlineService food-service is not running" in not_running.stderr
    model = galley(cluster, "logs", "model/no-such-model")
    assert model.returncode == 1 and "not found" in model.stderr

    command = str(Path(sys.executable).with_name("galley"))
    env = {**os.environ, "KUBECONFIG": str(cluster.env.kubeconfig)}
    wrong_kind = subprocess.run([command, "port-forward", "tj/food-service", "-n", cluster.namespace],
                                capture_output=True, text=True, env=env, timeout=60)
    assert wrong_kind.returncode == 1 and "port-forward reaches an OnlineService" in wrong_kind.stderr
    absent = subprocess.run([command, "port-forward", "osvc/nothing", "-n", cluster.namespace],
                            capture_output=True, text=True, env=env, timeout=60)
    assert absent.returncode == 1
    assert f"OnlineService 'nothing' not found in namespace '{cluster.namespace}'" in absent.stderr
    missing = galley(cluster, "predict", "food-service", str(tmp_path / "missing.jpg"))
    assert missing.returncode == 1 and "no such file" in missing.stderr
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8")
    predict = galley(cluster, "predict", "food-service", str(photo))
    assert predict.returncode == 1 and "OnlineService food-service is not running" in predict.stderr
