"""TrainingJobs on a real API server: the trainer Job, and status through every phase."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import watch

from galley.testing.operator import eventually
from tests.operator.conftest import Cluster

pytestmark = pytest.mark.envtest
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "02-s3" / "trainingjob.yaml"


def training_job(name: str = "food-resnet50", **spec: Any) -> dict[str, Any]:
    body = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    body["metadata"]["name"] = name
    body["spec"].update(spec)
    return body


def trainer_pod(cluster: Cluster, job: str) -> str:
    pods = eventually(lambda: cluster.core.list_namespaced_pod(
        cluster.namespace, label_selector=f"galley.dev/training-job={job}").items, message="no trainer pod")
    return str(pods[0].metadata.name)


def test_v100_job_has_selector_toleration_gpu_and_secret_by_reference(cluster: Cluster) -> None:
    cluster.create(training_job())
    job = eventually(lambda: cluster.batch.read_namespaced_job("food-resnet50-trainer", cluster.namespace),
                     message=cluster.operator_log)
    pod = job.spec.template.spec
    assert pod.node_selector == {"nvidia.com/gpu.product": "Tesla-V100-SXM2-32GB"}
    assert [(t.key, t.operator, t.effect) for t in pod.tolerations] == [("nvidia.com/gpu", "Exists", "NoSchedule")]
    container = pod.containers[0]
    assert container.resources.limits["nvidia.com/gpu"] == "1"
    assert container.command == ["python", "-m", "galley.trainer"]
    assert container.env_from[0].secret_ref.name == "s3-credentials"
    assert job.spec.backoff_limit == 3
    assert job.metadata.owner_references[0].kind == "TrainingJob"
    payload = json.loads(next(e.value for e in container.env if e.name == "GALLEY_TRAINING_JOB"))
    assert payload["spec"]["hyperparameters"]["learning_rate_strategy"] == "20:0.001"
    everything = json.dumps(cluster.env.api.sanitize_for_serialization(job)) + json.dumps(
        cluster.get("TrainingJob", "food-resnet50")) + cluster.operator_log()
    assert "s3cr3t-value-never-shown" not in everything
    eventually(lambda: cluster.condition("TrainingJob", "food-resnet50", "Created") == ("True", "JobCreated"))


def test_status_follows_the_trainer_from_running_to_succeeded(cluster: Cluster, s3: Any) -> None:
    s3.create_bucket(Bucket="food-recognition")
    cluster.create(training_job())
    pod = trainer_pod(cluster, "food-resnet50")
    cluster.play_kubelet(pod, {"phase": "Running", "startTime": "2026-11-26T08:00:00Z"})
    eventually(lambda: cluster.status("TrainingJob", "food-resnet50").get("phase") == "Running",
               message=cluster.operator_log)
    progress = {"phase": "Running", "epoch": 7, "epochs": 20,
                "metrics": {"accuracy": 0.875, "loss": 0.41, "imagesPerSecond": 412.5}}
    s3.put_object(Bucket="food-recognition", Key="food-recognition/output/progress.json",
                  Body=json.dumps(progress).encode())
    status = eventually(lambda: (s := cluster.status("TrainingJob", "food-resnet50")).get("epoch") == 7 and s)
    assert status["epochs"] == 20 and status["metrics"] == {"accuracy": 0.875, "loss": 0.41, "imagesPerSecond": 412.5}
    cluster.play_kubelet(pod, {"phase": "Succeeded", "containerStatuses": [{
        "name": "trainer", "image": "trainer", "imageID": "", "ready": False, "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]})
    done = eventually(lambda: (s := cluster.status("TrainingJob", "food-resnet50")).get("phase") == "Succeeded" and s,
                      message=cluster.operator_log)
    assert done["modelUri"] == "s3://food-recognition/food-recognition/output/model/"
    assert done["completionTime"]
    events = cluster.core.list_namespaced_event(cluster.namespace).items
    assert {"Running", "Succeeded"} <= {e.reason for e in events if e.involved_object.name == "food-resnet50"}


def _terminated(reason: str, code: int) -> dict[str, Any]:
    return {"phase": "Failed", "containerStatuses": [{
        "name": "trainer", "image": "trainer", "imageID": "", "ready": False, "restartCount": 0,
        "state": {"terminated": {"exitCode": code, "reason": reason}}}]}


@pytest.mark.parametrize(
    ("case", "pod_status", "expected"),
    [
        ("oom", _terminated("OOMKilled", 137), ("Failed", "True", "OOMKilled")),
        ("error", _terminated("Error", 1), ("Failed", "True", "BackoffLimitExceeded")),
        ("unschedulable", {"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]},
         ("Running", "False", "Unschedulable")),
        ("image-pull", {"phase": "Pending", "containerStatuses": [{
            "name": "trainer", "image": "trainer:bad", "imageID": "", "ready": False, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]},
         ("Running", "False", "ImagePullBackOff")),
    ],
)
def test_failure_and_waiting_reasons(cluster: Cluster, case: str, pod_status: dict[str, Any],
                                     expected: tuple[str, str, str]) -> None:
    cluster.create(training_job(runPolicy={"backoffLimit": 0}))
    pod = trainer_pod(cluster, "food-resnet50")
    cluster.play_kubelet(pod, pod_status)
    condition_type, status, reason = expected
    eventually(lambda: cluster.condition("TrainingJob", "food-resnet50", condition_type) == (status, reason),
               message=cluster.operator_log)


def test_deadline_exceeded(cluster: Cluster) -> None:
    cluster.create(training_job(runPolicy={"activeDeadlineSeconds": 1}))
    eventually(lambda: cluster.condition("TrainingJob", "food-resnet50", "Failed") == ("True", "DeadlineExceeded"),
               timeout=90, message=cluster.operator_log)


def test_two_nodes_are_refused_where_jobs_cannot_be_indexed(cluster: Cluster) -> None:
    # Kubernetes 1.20 (the test API server) drops completionMode: Indexed, so every worker would be
    # rank 0: the job is refused with a reason, and nothing is created. The Indexed Job itself is
    # checked in the builder's unit tests.
    cluster.create(training_job(resources={"flavor": "gpu-v100-8", "nodes": 2}))
    refused = ("True", "IndexedJobsUnsupported")
    eventually(lambda: cluster.condition("TrainingJob", "food-resnet50", "Failed") == refused,
               message=cluster.operator_log)
    message = next(c["message"] for c in cluster.status("TrainingJob", "food-resnet50")["conditions"]
                   if c["type"] == "Failed")
    assert "resources.nodes is 2" in message and "Indexed" in message
    assert cluster.batch.list_namespaced_job(cluster.namespace).items == []
    assert cluster.core.list_namespaced_service(cluster.namespace).items == []


def test_unknown_secret_is_reported_as_a_condition(cluster: Cluster) -> None:
    cluster.create(training_job(storage={"secretRef": "no-such-secret"}))
    eventually(lambda: cluster.condition("TrainingJob", "food-resnet50", "Created") == ("False", "InvalidSpec"),
               message=cluster.operator_log)
    message = next(c["message"] for c in cluster.status("TrainingJob", "food-resnet50")["conditions"]
                   if c["type"] == "Created")
    assert "Secret 'no-such-secret' not found" in message


def test_spec_change_of_a_started_job_is_ignored_with_a_condition(cluster: Cluster) -> None:
    cluster.create(training_job())
    eventually(lambda: cluster.condition("TrainingJob", "food-resnet50", "Created") == ("True", "JobCreated"))
    cluster.patch("TrainingJob", "food-resnet50", {"spec": {"hyperparameters": {"batch_size": "64"}}})
    eventually(lambda: cluster.condition("TrainingJob", "food-resnet50", "SpecAccepted") ==
               ("False", "SpecChangeIgnored"), message=cluster.operator_log)
    job = cluster.batch.read_namespaced_job("food-resnet50-trainer", cluster.namespace)
    payload = json.loads(next(e.value for e in job.spec.template.spec.containers[0].env
                              if e.name == "GALLEY_TRAINING_JOB"))
    assert payload["spec"]["hyperparameters"]["batch_size"] == "32"


def test_deleting_a_training_job_deletes_its_job(cluster: Cluster) -> None:
    cluster.create(training_job())
    eventually(lambda: cluster.batch.read_namespaced_job("food-resnet50-trainer", cluster.namespace))
    cluster.objects.delete_namespaced_custom_object("galley.dev", "v1alpha1", cluster.namespace, "trainingjobs",
                                                    "food-resnet50")
    eventually(lambda: not cluster.batch.list_namespaced_job(cluster.namespace).items, timeout=90,
               message="the garbage collector did not delete the Job")


def test_no_finalizer_and_no_further_writes_once_status_is_settled(cluster: Cluster) -> None:
    cluster.create(training_job())
    eventually(lambda: cluster.condition("TrainingJob", "food-resnet50", "Created") == ("True", "JobCreated"),
               message=cluster.operator_log)
    settled = cluster.reconciled("TrainingJob", "food-resnet50")
    assert not settled["metadata"].get("finalizers"), "deleting it must not wait for the operator"
    events: list[str] = []
    stream = watch.Watch()

    def record() -> None:
        for event in stream.stream(cluster.objects.list_namespaced_custom_object, "galley.dev", "v1alpha1",
                                   cluster.namespace, "trainingjobs", field_selector="metadata.name=food-resnet50",
                                   resource_version=settled["metadata"]["resourceVersion"], timeout_seconds=20):
            events.append(event["type"])

    watcher = threading.Thread(target=record, daemon=True)
    watcher.start()
    for _ in range(4):  # four more reconciles, each seen to run; a stray write would land between them
        again = cluster.reconciled("TrainingJob", "food-resnet50")
    eventually(lambda: len(events) >= 8)  # the watch ends by itself (server-side timeout)
    assert events == ["MODIFIED"] * 8, "each round: the request and its echo; nothing else is written"
    assert {k: v for k, v in again["status"].items() if k != "lastHandledReconcileAt"} == \
        {k: v for k, v in settled["status"].items() if k != "lastHandledReconcileAt"}


def test_a_flavor_the_catalogue_lacks_fails_the_job_with_invalid_spec(cluster: Cluster) -> None:
    cluster.create(training_job(resources={"flavor": "gpu-k80-1", "nodes": 1}))
    eventually(lambda: cluster.condition("TrainingJob", "food-resnet50", "Failed") == ("True", "InvalidSpec"),
               message=cluster.operator_log)
    status = cluster.reconciled("TrainingJob", "food-resnet50")["status"]  # a later reconcile keeps it so
    assert status["phase"] == "Failed"
    message = next(c["message"] for c in status["conditions"] if c["type"] == "Failed")
    assert "unknown flavor 'gpu-k80-1'" in message
    assert "Traceback" not in cluster.operator_log()
    assert not cluster.batch.list_namespaced_job(cluster.namespace).items
