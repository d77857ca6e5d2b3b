"""The generated CRDs on a real kube-apiserver: accepted, defaulted, shown as tables, and refusing bad specs."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from galley.api.meta import GROUP, VERSION
from galley.testing.envtest import Envtest

pytestmark = pytest.mark.envtest
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "02-s3"


@pytest.fixture
def namespace(envtest: Envtest) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(envtest.api).create_namespace({"metadata": {"name": name}})
    return name


def create(env: Envtest, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    plural = body["kind"].lower() + "s"
    return client.CustomObjectsApi(env.api).create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)


def example(name: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))


def test_examples_apply_and_get_defaults(envtest: Envtest, namespace: str) -> None:
    job = create(envtest, namespace, example("trainingjob.yaml"))
    assert job["spec"]["resources"] == {"flavor": "gpu-v100-1", "nodes": 1}
    assert job["spec"]["dataset"]["format"] == "auto"
    assert "runPolicy" not in job["spec"]  # the schema defaults fields inside runPolicy only when it is given
    limited = example("trainingjob.yaml")
    limited["metadata"]["name"] = "food-limited"
    limited["spec"]["runPolicy"] = {"activeDeadlineSeconds": 3600}
    limited = create(envtest, namespace, limited)
    assert limited["spec"]["runPolicy"] == {"activeDeadlineSeconds": 3600, "backoffLimit": 3}
    create(envtest, namespace, example("model.yaml"))
    service = create(envtest, namespace, example("onlineservice.yaml"))
    assert service["spec"]["runtime"] == "auto"
    assert service["spec"]["stopped"] is False


def test_trainingjobs_read_back_as_a_table_with_printer_columns(envtest: Envtest, namespace: str) -> None:
    create(envtest, namespace, example("trainingjob.yaml"))
    objects = client.CustomObjectsApi(envtest.api)
    objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "trainingjobs", "food-resnet50",
        {"status": {"phase": "Running", "epoch": 3, "epochs": 20, "metrics": {"accuracy": 0.91}}},
    )
    table = envtest.get_json(
        f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/trainingjobs",
        accept="application/json;as=Table;v=v1;g=meta.k8s.io",
    )
    columns = [c["name"] for c in table["columnDefinitions"]]
    assert columns[:7] == ["Name", "Status", "Epoch", "Epochs", "Accuracy", "Usage", "Flavor"]
    row = dict(zip(columns, table["rows"][0]["cells"], strict=True))
    assert (row["Name"], row["Status"], row["Epoch"], row["Accuracy"]) == ("food-resnet50", "Running", 3, 0.91)


def refusal(env: Envtest, namespace: str, body: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as error:
        create(env, namespace, body)
    assert error.value.status == 422
    return str(json.loads(error.value.body)["message"])


def test_apiserver_refuses_zero_nodes(envtest: Envtest, namespace: str) -> None:
    job = example("trainingjob.yaml")
    job["spec"]["resources"]["nodes"] = 0
    assert "spec.resources.nodes" in refusal(envtest, namespace, job)


def test_apiserver_refuses_a_missing_dataset(envtest: Envtest, namespace: str) -> None:
    job = example("trainingjob.yaml")
    del job["spec"]["dataset"]
    assert "spec.dataset: Required value" in refusal(envtest, namespace, job)


def test_apiserver_refuses_an_unknown_runtime(envtest: Envtest, namespace: str) -> None:
    service = example("onlineservice.yaml")
    service["spec"]["runtime"] = "knative"
    message = refusal(envtest, namespace, service)
    assert "spec.runtime" in message and "Unsupported value" in message


def test_apiserver_refuses_an_empty_auto_stop_and_a_bad_ingress_host(envtest: Envtest, namespace: str) -> None:
    service = example("onlineservice.yaml")
    service["spec"]["autoStop"] = {}
    assert "spec.autoStop" in refusal(envtest, namespace, service)
    service["spec"]["autoStop"] = {"idle": "15m"}
    service["spec"]["expose"] = {"ingress": {"host": "Food_Site"}}
    assert "spec.expose.ingress.host" in refusal(envtest, namespace, service)


@pytest.mark.parametrize("host", ["169.254.169.254", "0xa9fea9fe", "127.1", "food.internal.42"])
def test_apiserver_refuses_an_ingress_host_that_reads_as_an_ip_address(envtest: Envtest, namespace: str,
                                                                      host: str) -> None:
    service = example("onlineservice.yaml")
    service["spec"]["expose"] = {"ingress": {"host": host}}
    message = refusal(envtest, namespace, service)
    assert "spec.expose.ingress.host" in message and "should match" in message, message


def test_apiserver_refuses_a_malformed_learning_rate_strategy(envtest: Envtest, namespace: str) -> None:
    job = example("trainingjob.yaml")
    job["spec"]["hyperparameters"]["learning_rate_strategy"] = "20:"
    assert "spec.hyperparameters.learning_rate_strategy" in refusal(envtest, namespace, job)


def test_apiserver_refuses_a_model_with_two_sources(envtest: Envtest, namespace: str) -> None:
    model = example("model.yaml")
    model["spec"]["source"]["uri"] = "s3://food/model/"
    assert "spec.source" in refusal(envtest, namespace, model)


def test_status_is_a_subresource(envtest: Envtest, namespace: str) -> None:
    body = example("onlineservice.yaml")
    body["status"] = {"url": "http://sneaky"}
    created = create(envtest, namespace, body)
    assert "status" not in created or "url" not in created.get("status", {})


@pytest.mark.parametrize(("kind", "name", "expected"), [
    ("OnlineService", "s" * 60, "should be at most 53 chars long"),
    ("OnlineService", "s" * 54, "should be at most 53 chars long"),
    ("OnlineService", "4food", "should match '^[a-z]"),
    ("TrainingJob", "t" * 53, "should be at most 52 chars long"),
    ("TrainingJob", "4food", "should match '^[a-z]"),
])
def test_apiserver_refuses_names_the_children_cannot_carry(envtest: Envtest, namespace: str, kind: str, name: str,
                                                           expected: str) -> None:
    body = example("onlineservice.yaml" if kind == "OnlineService" else "trainingjob.yaml")
    body["metadata"]["name"] = name
    message = refusal(envtest, namespace, body)
    assert "metadata.name" in message and expected in message, message


def _try(create: Any, namespace: str, body: dict[str, Any]) -> int:
    """The status of creating ``body``: 201, or the API server's refusal."""
    try:
        create(namespace, body)
        return 201
    except ApiException as error:
        return int(error.status)


def test_children_of_names_at_the_limits_are_accepted_and_longer_ones_are_not(envtest: Envtest,
                                                                             namespace: str) -> None:
    """The limits are the children's own. At the limit the resource and its children are created; past it
    a child is refused (the name is set past Galley's check to try). 53 to 55 characters would make a
    TrainingJob's Job and workers Service, but not an Indexed Job's pods (host name NAME-trainer-63):
    v1.20 has no Indexed Jobs to show that."""
    from galley.api.flavors import default_catalogue
    from galley.api.resources import Model, OnlineService, TrainingJob
    from galley.operator import builders
    from galley.operator.settings import OperatorSettings

    settings = OperatorSettings()
    core, apps, batch = client.CoreV1Api(envtest.api), client.AppsV1Api(envtest.api), client.BatchV1Api(envtest.api)
    model = Model.model_validate({**example("model.yaml"), "status": {"uri": "s3://food/output/model/"}})
    service = OnlineService.model_validate({**example("onlineservice.yaml"), "metadata": {"name": "s" * 53}})
    create(envtest, namespace, service.to_manifest())
    assert _try(core.create_namespaced_service, namespace, builders.build_service(service)) == 201
    deployment = builders.build_deployment(service, model, default_catalogue()["cpu-1c-4g"], settings, True)
    assert _try(apps.create_namespaced_deployment, namespace, deployment) == 201
    service.metadata.name = "s" * 54
    assert _try(core.create_namespaced_service, namespace, builders.build_service(service)) == 422

    job = TrainingJob.model_validate({**example("trainingjob.yaml"), "metadata": {"name": "t" * 52}})
    create(envtest, namespace, job.to_manifest())
    flavor = default_catalogue()[job.spec.resources.flavor]
    assert _try(batch.create_namespaced_job, namespace, builders.build_trainer_job(job, flavor, settings)) == 201
    assert _try(core.create_namespaced_service, namespace, builders.build_workers_service(job, settings)) == 201
    job.metadata.name = "t" * 56
    assert _try(batch.create_namespaced_job, namespace, builders.build_trainer_job(job, flavor, settings)) == 422
    assert _try(core.create_namespaced_service, namespace, builders.build_workers_service(job, settings)) == 422
