"""Names the children cannot carry, on a cluster whose CRDs predate the rule: the operator says why.

``helm upgrade`` never replaces the CRDs in a chart's crds/ folder, so a cluster can run this
operator with CRDs that let any name through. Those resources must not sit without a condition
(as a 60-character OnlineService and ``4food`` did, their Service refused with a bare 422): the
operator's own check gives ``InvalidSpec`` with the rule and the reason.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from galley.api.crds import all_crds
from galley.api.meta import GROUP, VERSION
from galley.testing.envtest import Envtest, apply_crds
from galley.testing.operator import eventually
from tests.operator.conftest import Cluster
from tests.operator.test_services import online_service

pytestmark = pytest.mark.envtest
KINDS = ("galley.dev_onlineservices.yaml", "galley.dev_trainingjobs.yaml")


def _accepts(envtest: Envtest, plural: str, body: dict[str, Any]) -> bool:
    try:
        client.CustomObjectsApi(envtest.api).create_namespaced_custom_object(
            GROUP, VERSION, "default", plural, body, dry_run="All")
        return True
    except ApiException:
        return False


@pytest.fixture
def crds_without_the_name_rule(envtest: Envtest) -> Iterator[None]:
    """The OnlineService and TrainingJob CRDs as they were before names were constrained; restored after."""
    old = []
    for name in KINDS:
        crd = copy.deepcopy(all_crds()[name])
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["metadata"] = {"type": "object"}
        old.append(crd)
    apply_crds(envtest.api, old)
    eventually(lambda: _accepts(envtest, "onlineservices", online_service("4food")), timeout=30,
               message=lambda: "the API server still applies the name rule")
    try:
        yield
    finally:
        apply_crds(envtest.api, [all_crds()[name] for name in KINDS])
        deadline = time.monotonic() + 30
        while _accepts(envtest, "onlineservices", online_service("4food")) and time.monotonic() < deadline:
            time.sleep(0.2)


def _condition(cluster: Cluster, kind: str, name: str, type_: str) -> dict[str, Any] | None:
    return next((c for c in cluster.status(kind, name).get("conditions", []) if c["type"] == type_), None)


def test_names_the_children_cannot_carry_get_invalid_spec(crds_without_the_name_rule: None,
                                                          cluster: Cluster) -> None:
    long_name = "s" * 60
    for name in (long_name, "4food"):
        cluster.create(online_service(name))
    job = {"apiVersion": "galley.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "4food"},
           "spec": {"dataset": {"uri": "s3://food/data/"}, "output": {"uri": "s3://food/out/"}}}
    cluster.create(job)
    for name, why in ((long_name, "is 60 characters long"), ("4food", "starts with a digit")):
        ready = eventually(lambda n=name: _condition(cluster, "OnlineService", n, "Ready"), timeout=40,
                           message=cluster.operator_log)
        assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
        assert ready["message"].startswith("metadata.name: "), ready["message"]
        assert why in ready["message"] and "an OnlineService name is at most 53" in ready["message"]
        assert "NAME-predictor" in ready["message"]
        assert cluster.status("OnlineService", name).get("phase") == "Failed"
    failed = eventually(lambda: _condition(cluster, "TrainingJob", "4food", "Failed"), timeout=40,
                        message=cluster.operator_log)
    assert (failed["status"], failed["reason"]) == ("True", "InvalidSpec")
    assert "starts with a digit; a TrainingJob name is at most 52" in failed["message"]
    # Nothing was made for them.
    assert cluster.apps.list_namespaced_deployment(cluster.namespace).items == []
    assert cluster.batch.list_namespaced_job(cluster.namespace).items == []


def test_a_job_that_finished_under_the_earlier_rule_keeps_its_phase(crds_without_the_name_rule: None,
                                                                    cluster: Cluster) -> None:
    """An operator upgrade must not rewrite a Succeeded job to Failed over a name that was legal when
    it ran (a 54-character single-node job), nor keep its Model from the package it wrote."""
    name = "f" * 54
    cluster.create({"apiVersion": "galley.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": name},
                    "spec": {"dataset": {"uri": "s3://food/data/"}, "output": {"uri": "s3://food/out/"}}})
    cluster.objects.patch_namespaced_custom_object_status(GROUP, VERSION, cluster.namespace, "trainingjobs", name, {
        "status": {"phase": "Succeeded", "modelUri": "s3://food/out/model/", "conditions": [
            {"type": "Succeeded", "status": "True", "reason": "Completed", "message": "done",
             "lastTransitionTime": "2026-11-01T00:00:00Z"}]}})
    time.sleep(1)
    status = cluster.reconciled("TrainingJob", name)["status"]
    assert status["phase"] == "Succeeded"
    assert not [c for c in status.get("conditions", []) if c.get("reason") == "InvalidSpec"], status
