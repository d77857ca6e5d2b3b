"""On a real API server: a Model outlives its TrainingJob.

The kubelet is played by patching pod status; kube-controller-manager is real (Jobs make pods,
ReplicaSets meet quotas, garbage collection orphans or deletes dependents).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from galley.testing.operator import eventually
from tests.operator.conftest import Cluster
from tests.operator.test_services import (
    make_predictor_pods_ready,
    model,
    online_service,
    upload_package,
)
from tests.operator.test_trainingjobs import trainer_pod, training_job

pytestmark = pytest.mark.envtest
GROUP, VERSION = "galley.dev", "v1alpha1"


def _delete(cluster: Cluster, plural: str, name: str, policy: str = "Background") -> None:
    cluster.objects.delete_namespaced_custom_object(GROUP, VERSION, cluster.namespace, plural, name,
                                                    body={"propagationPolicy": policy})


def _gone(cluster: Cluster, kind: str, name: str) -> bool:
    try:
        cluster.get(kind, name)
    except client.ApiException as error:
        return error.status == 404
    return False


def _message(cluster: Cluster, kind: str, name: str, type_: str) -> str:
    return str(next(c["message"] for c in cluster.status(kind, name)["conditions"] if c["type"] == type_))


def _succeeded_training_job(cluster: Cluster, s3: Any, trained_package: Path) -> str:
    uri = upload_package(s3, trained_package, bucket="food-recognition", prefix="food-recognition/output/model/")
    cluster.create(training_job())
    cluster.play_kubelet(trainer_pod(cluster, "food-resnet50"), {"phase": "Succeeded"})
    eventually(lambda: cluster.status("TrainingJob", "food-resnet50").get("phase") == "Succeeded",
               message=cluster.operator_log)
    return uri


def test_deleting_the_training_job_under_a_running_service_keeps_it_serving(cluster: Cluster, s3: Any,
                                                                            trained_package: Path) -> None:
    uri = _succeeded_training_job(cluster, s3, trained_package)
    cluster.create(model("food-model", trainingJob="food-resnet50"))
    eventually(lambda: cluster.condition("Model", "food-model", "Ready") == ("True", "PackageReady"),
               message=cluster.operator_log)
    imported = cluster.status("Model", "food-model")
    assert imported["uri"] == uri
    cluster.create(online_service(runtime="raw"))
    make_predictor_pods_ready(cluster, "food-service")
    eventually(lambda: cluster.condition("OnlineService", "food-service", "Ready") == ("True", "Serving"),
               message=cluster.operator_log)

    _delete(cluster, "trainingjobs", "food-resnet50")  # tidying up finished jobs, or a TTL cleaner
    eventually(lambda: cluster.condition("Model", "food-model", "SourceAvailable") == ("False", "TrainingJobDeleted"),
               message=cluster.operator_log)
    kept = cluster.reconciled("Model", "food-model")["status"]
    assert (kept["uri"], kept["labels"]) == (uri, imported["labels"])
    assert kept["digest"] == imported["digest"] and kept["digest"].startswith("sha256:")
    assert cluster.condition("Model", "food-model", "Ready") == ("True", "PackageReady")
    assert "'food-resnet50' was deleted" in _message(cluster, "Model", "food-model", "SourceAvailable")
    cluster.reconciled("OnlineService", "food-service")
    assert cluster.condition("OnlineService", "food-service", "Ready") == ("True", "Serving")
    deployment = cluster.apps.read_namespaced_deployment("food-service-predictor", cluster.namespace)
    assert deployment.spec.replicas == 1
    assert deployment.spec.template.metadata.annotations["galley.dev/model-uri"] == uri


def test_a_model_whose_training_job_fails_galleys_checks_gets_a_status(cluster: Cluster) -> None:
    cluster.create(training_job(resources={"flavor": "gpu-k80-1", "nodes": 1}))  # passes the schema only
    cluster.create(model("food-model", trainingJob="food-resnet50"))
    eventually(lambda: cluster.condition("Model", "food-model", "Ready") == ("False", "TrainingJobInvalid"),
               message=cluster.operator_log)
    assert "unknown flavor 'gpu-k80-1'" in _message(cluster, "Model", "food-model", "Ready")
