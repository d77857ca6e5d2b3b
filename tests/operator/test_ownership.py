"""On a real API server: a Model outlives its TrainingJob, children are found by owner uid, and
every child the API server refuses reaches status with the server's message.

The kubelet is played by patching pod status; kube-controller-manager is real (Jobs make pods,
ReplicaSets meet quotas, garbage collection orphans or deletes dependents).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from galley.testing.envtest import Envtest, apply_crds
from galley.testing.operator import eventually
from tests.operator.conftest import Cluster
from tests.operator.test_services import (
    KSERVE_CRD,
    make_predictor_pods_ready,
    model,
    online_service,
    ready_model,
    upload_package,
)
from tests.operator.test_trainingjobs import trainer_pod, training_job

pytestmark = pytest.mark.envtest
GROUP, VERSION = "galley.dev", "v1alpha1"


@pytest.fixture
def kserve(envtest: Envtest) -> Iterator[None]:
    """KServe's InferenceService CRD for one test (no KServe controller: the test plays it where needed)."""
    apply_crds(envtest.api, [KSERVE_CRD])
    yield
    client.ApiextensionsV1Api(envtest.api).delete_custom_resource_definition(KSERVE_CRD["metadata"]["name"])
    eventually(lambda: not any(c.metadata.name == KSERVE_CRD["metadata"]["name"] for c in
                               client.ApiextensionsV1Api(envtest.api).list_custom_resource_definition().items))


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


def _quota(cluster: Cluster, hard: dict[str, str]) -> None:
    cluster.core.create_namespaced_resource_quota(cluster.namespace, {"metadata": {"name": "no-room"},
                                                                      "spec": {"hard": hard}})
    # The quota controller computes its usage; until then the API server refuses everything it covers.
    eventually(lambda: cluster.core.read_namespaced_resource_quota("no-room", cluster.namespace).status.hard)


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


def test_a_training_job_re_created_while_its_old_job_is_orphaned_adopts_nothing(cluster: Cluster) -> None:
    cluster.create(training_job())
    cluster.play_kubelet(trainer_pod(cluster, "food-resnet50"), {"phase": "Succeeded"})
    eventually(lambda: cluster.status("TrainingJob", "food-resnet50").get("phase") == "Succeeded",
               message=cluster.operator_log)
    _delete(cluster, "trainingjobs", "food-resnet50", policy="Orphan")  # kubectl delete --cascade=orphan
    eventually(lambda: _gone(cluster, "TrainingJob", "food-resnet50"), timeout=90)
    old = eventually(lambda: (j := cluster.batch.read_namespaced_job("food-resnet50-trainer", cluster.namespace))
                     and not j.metadata.owner_references and j, message="the Job kept its owner reference")

    cluster.create(training_job())
    eventually(lambda: cluster.condition("TrainingJob", "food-resnet50", "Created") == ("False", "NameConflict"),
               message=cluster.operator_log)
    for _ in range(2):  # later reconciles, seen to run, keep it so: the old Job's success is not this job's
        status = cluster.reconciled("TrainingJob", "food-resnet50")["status"]
        assert status["phase"] == "Pending" and "modelUri" not in status
    message = _message(cluster, "TrainingJob", "food-resnet50", "Created")
    assert "Job 'food-resnet50-trainer'" in message and "has no owner" in message
    same = cluster.batch.read_namespaced_job("food-resnet50-trainer", cluster.namespace)
    assert (same.metadata.uid, same.metadata.resource_version) == (old.metadata.uid, old.metadata.resource_version)

    # The user removes the old Job: the new TrainingJob makes its own, owned by its uid.
    cluster.batch.delete_namespaced_job("food-resnet50-trainer", cluster.namespace, propagation_policy="Background")
    uid = cluster.get("TrainingJob", "food-resnet50")["metadata"]["uid"]
    new = eventually(lambda: (j := cluster.batch.read_namespaced_job("food-resnet50-trainer", cluster.namespace))
                     and j.metadata.uid != old.metadata.uid and j, timeout=90, message=cluster.operator_log)
    assert [ref.uid for ref in new.metadata.owner_references] == [uid]
    eventually(lambda: cluster.condition("TrainingJob", "food-resnet50", "Created") == ("True", "JobCreated"),
               message=cluster.operator_log)
    assert cluster.status("TrainingJob", "food-resnet50")["phase"] != "Succeeded"


def test_a_multi_node_job_whose_name_is_taken_says_whose_it_is(cluster: Cluster) -> None:
    """The Indexed-Job dry run meets the taken name (409) first: that is a NameConflict, not a cluster
    without Indexed Jobs."""
    foreign = {"metadata": {"name": "food-resnet50-trainer"}, "spec": {"template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "x", "image": "busybox"}]}}}}
    cluster.batch.create_namespaced_job(cluster.namespace, foreign)
    cluster.create(training_job(resources={"flavor": "gpu-v100-1", "nodes": 2}))
    eventually(lambda: cluster.condition("TrainingJob", "food-resnet50", "Created") == ("False", "NameConflict"),
               message=cluster.operator_log)


def test_an_orphaned_predictor_under_a_re_created_service_is_left_untouched(cluster: Cluster, s3: Any,
                                                                            trained_package: Path) -> None:
    ready_model(cluster, s3, trained_package)
    cluster.create(online_service(runtime="raw"))
    eventually(lambda: cluster.apps.read_namespaced_deployment("food-service-predictor", cluster.namespace))
    _delete(cluster, "onlineservices", "food-service", policy="Orphan")
    eventually(lambda: _gone(cluster, "OnlineService", "food-service"), timeout=90)
    old = eventually(lambda: (d := cluster.apps.read_namespaced_deployment("food-service-predictor",
                                                                           cluster.namespace))
                     and not d.metadata.owner_references and d, message="the Deployment kept its owner reference")

    cluster.create(online_service(runtime="raw", replicas=2))  # the same name, another object, another spec
    eventually(lambda: cluster.condition("OnlineService", "food-service", "Ready") == ("False", "NameConflict"),
               message=cluster.operator_log)
    cluster.reconciled("OnlineService", "food-service")
    message = _message(cluster, "OnlineService", "food-service", "Ready")
    assert "Deployment 'food-service-predictor'" in message and "has no owner" in message
    same = cluster.apps.read_namespaced_deployment("food-service-predictor", cluster.namespace)
    assert (same.metadata.uid, same.metadata.generation, same.spec.replicas) == \
        (old.metadata.uid, old.metadata.generation, 1)
    assert not same.metadata.owner_references


def test_a_foreign_inference_service_with_the_services_name_is_left_untouched(cluster: Cluster, s3: Any,
                                                                             trained_package: Path,
                                                                             kserve: None) -> None:
    ready_model(cluster, s3, trained_package)
    foreign = cluster.objects.create_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", cluster.namespace, "inferenceservices",
        {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
         "metadata": {"name": "food-service", "annotations": {"serving.kserve.io/stop": "false"}},
         "spec": {"predictor": {"containers": [{"name": "someone-elses", "image": "theirs"}]}}})
    cluster.create(online_service(runtime="kserve"))
    eventually(lambda: cluster.condition("OnlineService", "food-service", "Ready") == ("False", "NameConflict"),
               message=cluster.operator_log)
    cluster.reconciled("OnlineService", "food-service")
    assert "InferenceService 'food-service'" in _message(cluster, "OnlineService", "food-service", "Ready")
    same = cluster.objects.get_namespaced_custom_object("serving.kserve.io", "v1beta1", cluster.namespace,
                                                        "inferenceservices", "food-service")
    assert same["metadata"]["resourceVersion"] == foreign["metadata"]["resourceVersion"]
    assert same["spec"] == foreign["spec"] and not same["metadata"].get("ownerReferences")

    # A switch to raw removes only what the service owns: the foreign InferenceService stays.
    cluster.patch("OnlineService", "food-service", {"spec": {"runtime": "raw"}})
    eventually(lambda: cluster.apps.read_namespaced_deployment("food-service-predictor", cluster.namespace),
               message=cluster.operator_log)
    assert cluster.objects.get_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", cluster.namespace, "inferenceservices", "food-service",
    )["metadata"]["uid"] == foreign["metadata"]["uid"]


def test_a_switch_to_a_runtime_whose_name_is_taken_keeps_the_old_one_serving(cluster: Cluster, s3: Any,
                                                                               trained_package: Path,
                                                                               kserve: None) -> None:
    ready_model(cluster, s3, trained_package)
    cluster.create(online_service(runtime="raw"))
    deployment = eventually(lambda: cluster.apps.read_namespaced_deployment("food-service-predictor",
                                                                            cluster.namespace),
                            message=cluster.operator_log)
    eventually(lambda: cluster.status("OnlineService", "food-service").get("runtime") == "raw")
    cluster.objects.create_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", cluster.namespace, "inferenceservices",
        {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
         "metadata": {"name": "food-service"},
         "spec": {"predictor": {"containers": [{"name": "someone-elses", "image": "theirs"}]}}})
    cluster.patch("OnlineService", "food-service", {"spec": {"runtime": "kserve"}})
    eventually(lambda: cluster.condition("OnlineService", "food-service", "Ready") == ("False", "NameConflict"),
               message=cluster.operator_log)
    cluster.reconciled("OnlineService", "food-service")
    kept = cluster.apps.read_namespaced_deployment("food-service-predictor", cluster.namespace)
    assert kept.metadata.uid == deployment.metadata.uid  # the raw predictor was not removed for nothing
    assert cluster.core.read_namespaced_service("food-service-predictor", cluster.namespace)


def test_a_quota_that_refuses_the_predictor_reaches_status_with_the_servers_message(
        cluster: Cluster, s3: Any, trained_package: Path) -> None:
    ready_model(cluster, s3, trained_package)
    _quota(cluster, {"count/deployments.apps": "0"})
    cluster.create(online_service(runtime="raw"))
    eventually(lambda: cluster.condition("OnlineService", "food-service", "Ready") == ("False", "ChildRejected"),
               message=cluster.operator_log)
    message = _message(cluster, "OnlineService", "food-service", "Ready")
    assert "(403)" in message and "exceeded quota: no-room" in message and "food-service-predictor" in message
    assert cluster.status("OnlineService", "food-service")["phase"] == "Pending"

    cluster.core.delete_namespaced_resource_quota("no-room", cluster.namespace)  # room again: it rolls out
    eventually(lambda: cluster.condition("OnlineService", "food-service", "Ready") == ("False", "RollingOut"),
               message=cluster.operator_log)
    assert cluster.apps.read_namespaced_deployment("food-service-predictor", cluster.namespace)


def test_a_quota_that_refuses_the_predictors_pods_reaches_status(cluster: Cluster, s3: Any,
                                                                 trained_package: Path) -> None:
    ready_model(cluster, s3, trained_package)
    _quota(cluster, {"pods": "0"})
    cluster.create(online_service(runtime="raw"))
    eventually(lambda: cluster.condition("OnlineService", "food-service", "Ready") == ("False", "ChildRejected"),
               timeout=90, message=cluster.operator_log)
    message = _message(cluster, "OnlineService", "food-service", "Ready")
    assert "cannot create its pods" in message and "exceeded quota: no-room" in message


def test_a_quota_that_refuses_the_trainer_reaches_status(cluster: Cluster) -> None:
    _quota(cluster, {"count/jobs.batch": "0"})
    cluster.create(training_job())
    eventually(lambda: cluster.condition("TrainingJob", "food-resnet50", "Created") == ("False", "ChildRejected"),
               message=cluster.operator_log)
    assert "exceeded quota: no-room" in _message(cluster, "TrainingJob", "food-resnet50", "Created")
    assert cluster.status("TrainingJob", "food-resnet50")["phase"] == "Pending"


def test_runtime_kserve_on_a_cluster_without_kserve_says_so(cluster: Cluster, s3: Any,
                                                            trained_package: Path) -> None:
    """No InferenceService kind is served here: the create's 404 reaches status, not just the log."""
    ready_model(cluster, s3, trained_package)
    cluster.create(online_service(runtime="kserve"))
    eventually(lambda: cluster.condition("OnlineService", "food-service", "Ready") == ("False", "ChildRejected"),
               message=cluster.operator_log)
    message = _message(cluster, "OnlineService", "food-service", "Ready")
    assert "serves no InferenceService" in message and "CustomResourceDefinition" in message
