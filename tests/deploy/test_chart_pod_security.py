"""The chart's own pods (operator, console) pass Pod Security ``restricted`` in every shape its
values render, checked by tests/podsecurity.py over ``helm template``'s output."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.test_chart import render
from tests.podsecurity import containers, pods_of, violations

SHAPES: dict[str, tuple[str, ...]] = {
    "defaults": (),
    "console on": ("--set", "console.enabled=true", "--set", "console.namespace=food",
                   "--set", "console.storageSecret=s3-credentials"),
    "namespaced": ("--set", "watchNamespaces={team-a,team-b}"),
    "placed and annotated": ("--set", "nodeSelector.pool=system", "--set", "tolerations[0].operator=Exists",
                             "--set", "podAnnotations.team=ml", "--set", "extraEnv[0].name=KUBERNETES_SERVICE_HOST",
                             "--set", "extraEnv[0].value=10.0.0.1", "--set", "storage.endpoint=https://s3.example",
                             "--set", "console.enabled=true"),
}
API_CALLERS = {"galley-operator", "galley-console"}
"""The chart's pods that call the API server, and so mount a token."""


def chart_pods(*values: str) -> list[tuple[str, Any, Any]]:
    return [pod for document in render(*values) for pod in pods_of(document)]


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_pod_the_chart_renders_passes_the_restricted_profile(shape: str) -> None:
    pods = chart_pods(*SHAPES[shape])
    expected = 2 if "console.enabled=true" in SHAPES[shape] else 1
    assert len(pods) == expected, [where for where, _, _ in pods]
    for where, pod, pod_annotations in pods:
        assert violations(pod, pod_annotations) == [], where


def test_the_charts_pods_have_a_read_only_root_and_only_api_callers_mount_a_token() -> None:
    for where, pod, _ in chart_pods(*SHAPES["console on"]):
        volumes = {v["name"]: v for v in pod["volumes"]}
        for path, container in containers(pod):
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, (where, path)
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]["name"]], (where, path)
            writable = [m for m in mounts.values() if not m.get("readOnly")]
            assert all("emptyDir" in volumes[m["name"]] for m in writable), (where, path)
        if pod.get("automountServiceAccountToken") is not False:
            assert where.split("/")[1] in API_CALLERS, f"{where} mounts a token it does not use"
