"""Models and OnlineServices on a real API server: package checks, raw and KServe rollouts, autostop."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from galley.testing.envtest import Envtest, apply_crds
from galley.testing.operator import eventually, operator_process
from tests.operator.conftest import Cluster

pytestmark = pytest.mark.envtest

# A minimal stand-in for KServe's CRD: the operator only needs the kind to exist and carry a status.
KSERVE_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "inferenceservices.serving.kserve.io"},
    "spec": {"group": "serving.kserve.io", "scope": "Namespaced",
             "names": {"kind": "InferenceService", "plural": "inferenceservices", "singular": "inferenceservice",
                       "shortNames": ["isvc"]},
             "versions": [{"name": "v1beta1", "served": True, "storage": True, "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": {"type": "object",
                                                          "x-kubernetes-preserve-unknown-fields": True}}}]},
}


def upload_package(s3: Any, package: Path, bucket: str = "models", prefix: str = "food/") -> str:
    s3.create_bucket(Bucket=bucket)
    for path in package.iterdir():
        s3.upload_file(str(path), bucket, prefix + path.name)
    return f"s3://{bucket}/{prefix}"


def model(name: str, **source: str) -> dict[str, Any]:
    return {"apiVersion": "galley.dev/v1alpha1", "kind": "Model", "metadata": {"name": name},
            "spec": {"source": source, "version": "1.2.0", "storage": {"secretRef": "s3-credentials"}}}


def online_service(name: str = "food-service", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "galley.dev/v1alpha1", "kind": "OnlineService", "metadata": {"name": name},
            "spec": {"model": "food-model", "flavor": "cpu-1c-4g", "storage": {"secretRef": "s3-credentials"},
                     **spec}}


def ready_model(cluster: Cluster, s3: Any, trained_package: Path) -> None:
    cluster.create(model("food-model", uri=upload_package(s3, trained_package)))
    eventually(lambda: cluster.condition("Model", "food-model", "Ready") == ("True", "PackageReady"),
               message=cluster.operator_log)


def try_kubelet(cluster: Cluster, pod: str, status: dict[str, Any]) -> None:
    """Play the kubelet for a pod that may be gone by now (a rollout replaces pods)."""
    try:
        cluster.play_kubelet(pod, status)
    except client.ApiException as error:
        if error.status != 404:
            raise


def make_predictor_pods_ready(cluster: Cluster, service: str, pod_ip: str = "10.0.0.7") -> None:
    """Play scheduler and kubelet for the Deployment's pods: Running and Ready at ``pod_ip``."""
    def pods() -> list[Any]:
        return cluster.core.list_namespaced_pod(cluster.namespace,
                                                label_selector=f"galley.dev/online-service={service}").items
    for pod in eventually(pods, message="the Deployment made no pods"):
        if pod.metadata.deletion_timestamp is not None:
            continue
        try_kubelet(cluster, pod.metadata.name, {
            "phase": "Running", "podIP": pod_ip, "podIPs": [{"ip": pod_ip}], "startTime": "2026-11-26T08:00:00Z",
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}],
            "containerStatuses": [{"name": "predictor", "image": "predictor", "imageID": "", "ready": True,
                                   "restartCount": 0, "started": True,
                                   "state": {"running": {"startedAt": "2026-11-26T08:00:00Z"}}}]})


def _stop_at(cluster: Cluster, name: str = "food-service") -> datetime | None:
    value = cluster.status("OnlineService", name).get("stopAt")
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def test_model_from_a_uri_records_labels_metrics_and_algorithm(cluster: Cluster, s3: Any,
                                                               trained_package: Path) -> None:
    ready_model(cluster, s3, trained_package)
    status = cluster.status("Model", "food-model")
    assert status["labels"] == ["水果", "花", "蔬菜", "鸟"]
    assert status["algorithm"] == "mobilenet_v2" and 0 < status["metrics"]["accuracy"] <= 1
    cluster.create(model("broken", uri="s3://models/nothing-here/"))
    eventually(lambda: cluster.condition("Model", "broken", "Ready") == ("False", "PackageMissing"))


def test_a_service_on_a_flavor_the_catalogue_lacks_gets_invalid_spec_naming_the_field(cluster: Cluster) -> None:
    cluster.create(online_service(flavor="gpu-t4-1"))  # passes the CRD schema, not the operator's catalogue
    eventually(lambda: cluster.condition("OnlineService", "food-service", "Ready") == ("False", "InvalidSpec"),
               message=cluster.operator_log)
    status = cluster.status("OnlineService", "food-service")
    assert status["phase"] == "Failed"
    message = next(c["message"] for c in status["conditions"] if c["type"] == "Ready")
    assert message.startswith("spec.flavor:") and "unknown flavor 'gpu-t4-1'" in message
    assert "Traceback" not in cluster.operator_log()
    assert not cluster.apps.list_namespaced_deployment(cluster.namespace).items


def test_model_waits_for_its_training_job_and_becomes_ready(cluster: Cluster, s3: Any,
                                                            trained_package: Path) -> None:
    cluster.create(model("food-model", trainingJob="food-resnet50"))
    eventually(lambda: cluster.condition("Model", "food-model", "Ready") == ("False", "TrainingJobNotFound"))
    uri = upload_package(s3, trained_package, bucket="food-recognition", prefix="food-recognition/output/model/")
    from tests.operator.test_trainingjobs import trainer_pod, training_job

    cluster.create(training_job())
    eventually(lambda: cluster.condition("Model", "food-model", "Ready") == ("False", "TrainingJobNotFinished"))
    cluster.play_kubelet(trainer_pod(cluster, "food-resnet50"), {"phase": "Succeeded"})
    eventually(lambda: cluster.condition("Model", "food-model", "Ready") == ("True", "PackageReady"),
               message=cluster.operator_log)
    assert cluster.status("Model", "food-model")["uri"] == uri


def test_raw_rollout_autostop_and_start_again(cluster: Cluster, s3: Any, trained_package: Path) -> None:
    ready_model(cluster, s3, trained_package)
    cluster.create(online_service(runtime="raw", autoStop={"after": "4s"}))
    deployment = eventually(lambda: cluster.apps.read_namespaced_deployment("food-service-predictor",
                                                                            cluster.namespace))
    container = deployment.spec.template.spec.containers[0]
    assert container.resources.limits == {"cpu": "1", "memory": "4Gi"}
    assert "--threads" in container.args and container.args[container.args.index("--threads") + 1] == "1"
    service = eventually(lambda: cluster.core.read_namespaced_service("food-service-predictor", cluster.namespace))
    assert service.spec.ports[0].port == 80
    assert cluster.condition("OnlineService", "food-service", "Ready") == ("False", "RollingOut")
    make_predictor_pods_ready(cluster, "food-service")
    eventually(lambda: cluster.condition("OnlineService", "food-service", "Ready") == ("True", "Serving"),
               message=cluster.operator_log)
    status = cluster.status("OnlineService", "food-service")
    assert status["url"] == f"http://food-service-predictor.{cluster.namespace}.svc.cluster.local/"
    first_stop = _stop_at(cluster)
    assert first_stop is not None
    eventually(lambda: cluster.condition("OnlineService", "food-service", "Stopped") == ("True", "AutoStopped"),
               timeout=30, message=cluster.operator_log)
    assert cluster.apps.read_namespaced_deployment("food-service-predictor", cluster.namespace).spec.replicas == 0

    cluster.patch("OnlineService", "food-service",
                  {"metadata": {"annotations": {"galley.dev/start": "2026-11-26T09:00:00Z"}}})
    eventually(lambda: cluster.apps.read_namespaced_deployment("food-service-predictor",
                                                               cluster.namespace).spec.replicas == 1)
    make_predictor_pods_ready(cluster, "food-service")
    second = eventually(lambda: (s := _stop_at(cluster)) and s > first_stop and s, message=cluster.operator_log)
    assert second > first_stop
    for _ in range(2):  # later reconciles, seen to run, do not move the timer for the same start request
        cluster.reconciled("OnlineService", "food-service")
        assert _stop_at(cluster) == second
    assert cluster.status("OnlineService", "food-service")["lastStartRequest"] == "2026-11-26T09:00:00Z"

    cluster.patch("OnlineService", "food-service", {"spec": {"stopped": True}})
    eventually(lambda: cluster.condition("OnlineService", "food-service", "Stopped") == ("True", "StoppedByUser"))
    assert cluster.apps.read_namespaced_deployment("food-service-predictor", cluster.namespace).spec.replicas == 0


def test_deleting_the_model_under_a_running_service_stops_its_predictor(cluster: Cluster, s3: Any,
                                                                        trained_package: Path) -> None:
    ready_model(cluster, s3, trained_package)
    cluster.create(online_service(runtime="raw"))
    eventually(lambda: cluster.apps.read_namespaced_deployment("food-service-predictor", cluster.namespace))
    make_predictor_pods_ready(cluster, "food-service")
    eventually(lambda: cluster.condition("OnlineService", "food-service", "Ready") == ("True", "Serving"),
               message=cluster.operator_log)

    cluster.objects.delete_namespaced_custom_object("galley.dev", "v1alpha1", cluster.namespace, "models",
                                                    "food-model")
    eventually(lambda: cluster.condition("OnlineService", "food-service", "Ready") == ("False", "ModelNotFound"),
               message=cluster.operator_log)
    eventually(lambda: cluster.apps.read_namespaced_deployment("food-service-predictor",
                                                               cluster.namespace).spec.replicas == 0,
               message=cluster.operator_log)  # as the embedded backend stops it

    ready_model(cluster, s3, trained_package)  # the Model comes back: so does the predictor
    eventually(lambda: cluster.apps.read_namespaced_deployment("food-service-predictor",
                                                               cluster.namespace).spec.replicas == 1,
               message=cluster.operator_log)


def test_a_deleted_predictor_of_a_running_service_comes_back(cluster: Cluster, s3: Any,
                                                           trained_package: Path) -> None:
    ready_model(cluster, s3, trained_package)
    cluster.create(online_service(runtime="raw"))
    make_predictor_pods_ready(cluster, "food-service")
    eventually(lambda: cluster.condition("OnlineService", "food-service", "Ready") == ("True", "Serving"),
               message=cluster.operator_log)
    first_uid = cluster.apps.read_namespaced_deployment("food-service-predictor", cluster.namespace).metadata.uid
    cluster.apps.delete_namespaced_deployment("food-service-predictor", cluster.namespace)
    # A settled service is otherwise looked at only every 30 intervals (30 s here): the Deployment's
    # deletion itself must bring the reconcile that recreates it.
    recreated = eventually(lambda: cluster.apps.read_namespaced_deployment("food-service-predictor",
                                                                           cluster.namespace), timeout=15,
                           message=cluster.operator_log)
    assert recreated.metadata.uid != first_uid


def test_kserve_rollout_and_stop_annotation(cluster: Cluster, s3: Any, trained_package: Path,
                                            envtest: Envtest) -> None:
    apply_crds(envtest.api, [KSERVE_CRD])
    try:
        ready_model(cluster, s3, trained_package)
        cluster.create(online_service(runtime="kserve", replicas=2, autoStop={"after": "3s"}))
        isvc = eventually(lambda: cluster.objects.get_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", cluster.namespace, "inferenceservices", "food-service"))
        predictor = isvc["spec"]["predictor"]
        assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 2)
        assert predictor["containers"][0]["args"][:2] == ["--model", "s3://models/food/"]
        assert isvc["metadata"]["annotations"]["serving.kserve.io/stop"] == "false"
        assert isvc["metadata"]["ownerReferences"][0]["kind"] == "OnlineService"
        # Play KServe's controller: report the InferenceService ready with its URL.
        cluster.objects.patch_namespaced_custom_object_status(
            "serving.kserve.io", "v1beta1", cluster.namespace, "inferenceservices", "food-service",
            {"status": {"url": "http://food-service.example.com", "conditions": [{"type": "Ready", "status": "True"}]}})
        eventually(lambda: cluster.status("OnlineService", "food-service").get("url") ==
                   "http://food-service.example.com", message=cluster.operator_log)
        eventually(lambda: cluster.objects.get_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", cluster.namespace, "inferenceservices", "food-service",
        )["metadata"]["annotations"]["serving.kserve.io/stop"] == "true", timeout=30)
        assert cluster.condition("OnlineService", "food-service", "Stopped") == ("True", "AutoStopped")
    finally:
        client.ApiextensionsV1Api(envtest.api).delete_custom_resource_definition(KSERVE_CRD["metadata"]["name"])
        eventually(lambda: not any(c.metadata.name == KSERVE_CRD["metadata"]["name"] for c in
                                   client.ApiextensionsV1Api(envtest.api).list_custom_resource_definition().items))


def test_unknown_model_is_reported(cluster: Cluster) -> None:
    cluster.create(online_service(model="no-such-model"))
    eventually(lambda: cluster.condition("OnlineService", "food-service", "Ready") == ("False", "ModelNotFound"))


def test_autostop_survives_an_operator_restart(envtest: Envtest, s3: Any, s3_endpoint: str,
                                               trained_package: Path, tmp_path: Path) -> None:
    import base64
    import uuid

    namespace = f"op-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(envtest.api)
    core.create_namespace({"metadata": {"name": namespace}})
    values = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_ENDPOINT_URL": s3_endpoint}
    core.create_namespaced_secret(namespace, {"metadata": {"name": "s3-credentials"}, "data": {
        k: base64.b64encode(v.encode()).decode() for k, v in values.items()}})
    cluster = Cluster(envtest, namespace, tmp_path / "operator.log", s3_endpoint)
    with operator_process(envtest, namespace, cluster.log):
        ready_model(cluster, s3, trained_package)
        cluster.create(online_service(runtime="raw", autoStop={"after": "8s"}))
        make_predictor_pods_ready(cluster, "food-service")
        eventually(lambda: _stop_at(cluster), message=cluster.operator_log)
    stop_at = _stop_at(cluster)
    assert stop_at is not None
    time.sleep(max(0.0, (stop_at - datetime.now(stop_at.tzinfo)).total_seconds()) + 1)
    assert cluster.apps.read_namespaced_deployment("food-service-predictor", namespace).spec.replicas == 1, \
        "nothing stops it while the operator is down"
    with operator_process(envtest, namespace, cluster.log):
        eventually(lambda: cluster.condition("OnlineService", "food-service", "Stopped") == ("True", "AutoStopped"),
                   timeout=30, message=cluster.operator_log)
        assert cluster.apps.read_namespaced_deployment("food-service-predictor", namespace).spec.replicas == 0
        assert _stop_at(cluster) == stop_at  # an autostop keeps the time it stopped at


def test_operator_identity_has_only_its_role(envtest: Envtest) -> None:
    from galley.testing.operator import grant_operator_role

    grant_operator_role(envtest)
    operator_api = envtest.client_for("operator")
    client.CoreV1Api(operator_api).list_namespaced_pod("default")  # allowed
    for forbidden in (lambda: client.CoreV1Api(operator_api).list_secret_for_all_namespaces(),
                      lambda: client.BatchV1Api(operator_api).delete_namespaced_job("x", "default"),
                      lambda: client.CoreV1Api(operator_api).create_namespace({"metadata": {"name": "nope"}})):
        with pytest.raises(client.ApiException) as error:
            forbidden()
        assert error.value.status == 403


def test_expose_ingress_renders_updates_and_removes_an_ingress(cluster: Cluster, s3: Any,
                                                               trained_package: Path) -> None:
    networking = client.NetworkingV1Api(cluster.env.api)
    ready_model(cluster, s3, trained_package)
    cluster.create(online_service(runtime="raw", expose={"ingress": {
        "host": "food.example.com", "className": "nginx", "tls": {"secretName": "food-tls"}}}))
    ingress = eventually(lambda: networking.read_namespaced_ingress("food-service-predictor", cluster.namespace),
                         message=cluster.operator_log)
    assert ingress.spec.ingress_class_name == "nginx"
    rule = ingress.spec.rules[0]
    assert rule.host == "food.example.com"
    backend = rule.http.paths[0].backend.service
    assert (backend.name, backend.port.number) == ("food-service-predictor", 80)
    assert [(t.hosts, t.secret_name) for t in ingress.spec.tls] == [(["food.example.com"], "food-tls")]
    assert ingress.metadata.owner_references[0].kind == "OnlineService"
    make_predictor_pods_ready(cluster, "food-service")
    eventually(lambda: cluster.status("OnlineService", "food-service").get("url") == "https://food.example.com/",
               message=cluster.operator_log)

    cluster.patch("OnlineService", "food-service", {"spec": {"expose": {"ingress": {
        "host": "food.example.org", "className": None, "tls": None}}}})
    updated = eventually(lambda: (i := networking.read_namespaced_ingress(
        "food-service-predictor", cluster.namespace)).spec.rules[0].host == "food.example.org" and i,
        message=cluster.operator_log)
    assert updated.spec.tls is None and updated.spec.ingress_class_name is None
    eventually(lambda: cluster.status("OnlineService", "food-service").get("url") == "http://food.example.org/")

    cluster.patch("OnlineService", "food-service", {"spec": {"expose": None}})
    eventually(lambda: not networking.list_namespaced_ingress(cluster.namespace).items, message=cluster.operator_log)
    eventually(lambda: cluster.status("OnlineService", "food-service").get("url") ==
               f"http://food-service-predictor.{cluster.namespace}.svc.cluster.local/")


def test_raw_runtime_rolls_out_a_new_package_and_reports_what_the_pods_serve(cluster: Cluster, s3: Any,
                                                                             trained_package: Path) -> None:
    first_uri = upload_package(s3, trained_package, bucket=f"roll-{cluster.namespace}", prefix="v1/")
    second_uri = upload_package(s3, trained_package, bucket=f"roll2-{cluster.namespace}", prefix="v2/")
    cluster.create(model("food-model", uri=first_uri))
    cluster.create(online_service(runtime="raw"))
    make_predictor_pods_ready(cluster, "food-service")
    eventually(lambda: cluster.status("OnlineService", "food-service").get("modelUri") == first_uri,
               message=cluster.operator_log)
    assert cluster.status("OnlineService", "food-service")["runtime"] == "raw"

    def template() -> Any:
        return cluster.apps.read_namespaced_deployment("food-service-predictor", cluster.namespace).spec.template

    first_hash = template().metadata.annotations["galley.dev/template-hash"]
    cluster.patch("Model", "food-model", {"spec": {"source": {"uri": second_uri}}})
    rolled = eventually(lambda: (t := template()).metadata.annotations["galley.dev/model-uri"] == second_uri and t,
                        message=cluster.operator_log)
    assert rolled.metadata.annotations["galley.dev/template-hash"] != first_hash
    assert second_uri in rolled.spec.containers[0].args
    assert cluster.status("OnlineService", "food-service")["modelUri"] == first_uri, \
        "until the new pods are Ready, the old ones serve the old package"
    make_predictor_pods_ready(cluster, "food-service")  # the kubelet's part: the new ReplicaSet's pods run
    eventually(lambda: cluster.status("OnlineService", "food-service").get("modelUri") == second_uri,
               message=cluster.operator_log)

    cluster.patch("OnlineService", "food-service", {"spec": {"flavor": "cpu-2c-8g"}})
    resized = eventually(lambda: (t := template()).spec.containers[0].resources.limits["cpu"] == "2" and t,
                         message=cluster.operator_log)
    assert "--threads" in resized.spec.containers[0].args


def test_runtime_auto_is_decided_once_and_a_switch_removes_the_old_workload(envtest: Envtest, s3: Any,
                                                                           s3_endpoint: str, tmp_path: Path,
                                                                           trained_package: Path) -> None:
    from tests.operator.conftest import new_namespace

    cluster = new_namespace(envtest, s3_endpoint, tmp_path)
    with operator_process(envtest, cluster.namespace, cluster.log, {"GALLEY_KSERVE_CHECK_SECONDS": "0.5"}):
        ready_model(cluster, s3, trained_package)
        cluster.create(online_service(runtime="auto"))
        eventually(lambda: cluster.status("OnlineService", "food-service").get("runtime") == "raw",
                   message=cluster.operator_log)
        eventually(lambda: cluster.apps.read_namespaced_deployment("food-service-predictor", cluster.namespace))
        apply_crds(envtest.api, [KSERVE_CRD])
        try:
            time.sleep(1)  # longer than the operator's memory of "is KServe installed?" (0.5 s here)
            # A metadata-only change (a start request) brings a reconcile, seen in lastStartRequest.
            cluster.patch("OnlineService", "food-service",
                          {"metadata": {"annotations": {"galley.dev/start": "2026-11-29T10:00:00Z"}}})
            eventually(lambda: cluster.status("OnlineService", "food-service").get("lastStartRequest")
                       == "2026-11-29T10:00:00Z", message=cluster.operator_log)
            assert cluster.status("OnlineService", "food-service")["runtime"] == "raw", \
                "installing KServe moves no running service"
            assert cluster.apps.read_namespaced_deployment("food-service-predictor", cluster.namespace)
            cluster.patch("OnlineService", "food-service", {"spec": {"replicas": 2}})  # a spec change decides again
            eventually(lambda: cluster.objects.get_namespaced_custom_object(
                "serving.kserve.io", "v1beta1", cluster.namespace, "inferenceservices", "food-service"),
                timeout=60, message=cluster.operator_log)
            eventually(lambda: not cluster.apps.list_namespaced_deployment(cluster.namespace).items,
                       message=cluster.operator_log)
            eventually(lambda: not [s for s in cluster.core.list_namespaced_service(cluster.namespace).items
                                    if s.metadata.name == "food-service-predictor"])
            assert cluster.status("OnlineService", "food-service")["runtime"] == "kserve"
            assert "moved from raw to kserve: the raw workload was removed" in cluster.operator_log()
        finally:
            client.ApiextensionsV1Api(envtest.api).delete_custom_resource_definition(KSERVE_CRD["metadata"]["name"])
            eventually(lambda: not any(c.metadata.name == KSERVE_CRD["metadata"]["name"] for c in
                                       client.ApiextensionsV1Api(envtest.api).list_custom_resource_definition().items))


def test_against_kserves_own_schema_and_webhook_defaults_there_is_no_patch_loop(
        cluster: Cluster, s3: Any, trained_package: Path, envtest: Envtest) -> None:
    from galley.testing.kserve import default_like_the_webhook, inference_service_crd

    crd = inference_service_crd()
    apply_crds(envtest.api, [crd])
    try:
        ready_model(cluster, s3, trained_package)
        cluster.create(online_service(runtime="kserve", replicas=2, autoStop={"after": "1h"}))

        def isvc() -> dict[str, Any]:
            found: dict[str, Any] = cluster.objects.get_namespaced_custom_object(
                "serving.kserve.io", "v1beta1", cluster.namespace, "inferenceservices", "food-service")
            return found

        created = eventually(isvc, message=cluster.operator_log)
        predictor = created["spec"]["predictor"]
        assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 2), "KServe's schema kept them"
        container = predictor["containers"][0]
        assert container["name"] == "kserve-container" and "--model" in container["args"]
        assert container["resources"]["limits"] == {"cpu": "1", "memory": "4Gi"}
        # Play KServe's webhook: defaults land on fields Galley does not own.
        cluster.objects.patch_namespaced_custom_object("serving.kserve.io", "v1beta1", cluster.namespace,
                                                       "inferenceservices", "food-service",
                                                       default_like_the_webhook(created))
        defaulted = isvc()
        assert defaulted["spec"]["predictor"]["timeout"] == 60
        for _ in range(3):  # reconciles, each seen to run, leave the defaulted object alone
            cluster.reconciled("OnlineService", "food-service")
            assert isvc()["metadata"]["resourceVersion"] == defaulted["metadata"]["resourceVersion"], \
                "the operator patched away the webhook's defaults"
        cluster.patch("OnlineService", "food-service", {"spec": {"flavor": "cpu-2c-8g"}})  # an owned field
        eventually(lambda: isvc()["spec"]["predictor"]["containers"][0]["resources"]["limits"]["cpu"] == "2",
                   message=cluster.operator_log)
        assert isvc()["spec"]["predictor"]["timeout"] == 60, "the patch keeps what the webhook set"
    finally:
        client.ApiextensionsV1Api(envtest.api).delete_custom_resource_definition(crd["metadata"]["name"])
        eventually(lambda: not any(c.metadata.name == crd["metadata"]["name"] for c in
                                   client.ApiextensionsV1Api(envtest.api).list_custom_resource_definition().items))
