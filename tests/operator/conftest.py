"""Operator fixtures: a namespace per test, S3 credentials in a Secret, the operator as a real process.

There is no scheduler or kubelet on the envtest API server: tests play them by patching Pod status,
and say so where they do. kube-controller-manager is real (Jobs create Pods, Deployments create
ReplicaSets and Pods, garbage collection follows owner references).
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from galley.api.meta import GROUP, VERSION
from galley.testing.envtest import Envtest
from galley.testing.operator import operator_process


@dataclass
class Cluster:
    """One test's namespace on the real API server, with the operator watching it."""

    env: Envtest
    namespace: str
    log: Path
    s3_endpoint: str

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.env.api)

    @property
    def batch(self) -> client.BatchV1Api:
        return client.BatchV1Api(self.env.api)

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.env.api)

    @property
    def objects(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.env.api)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        plural = body["kind"].lower() + "s"
        return self.objects.create_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, body)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return self.objects.get_namespaced_custom_object(GROUP, VERSION, self.namespace, kind.lower() + "s", name)

    def patch(self, kind: str, name: str, body: dict[str, Any]) -> None:
        self.objects.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, kind.lower() + "s", name, body)

    def status(self, kind: str, name: str) -> dict[str, Any]:
        return self.get(kind, name).get("status") or {}

    def condition(self, kind: str, name: str, type_: str) -> tuple[str, str] | None:
        for c in self.status(kind, name).get("conditions", []):
            if c["type"] == type_:
                return c["status"], c["reason"]
        return None

    def operator_log(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def reconciled(self, kind: str, name: str) -> dict[str, Any]:
        """Ask for a reconcile (galley.dev/reconcile-requested-at) and wait until one has run; the
        resource as it then is. Proofs that nothing changed wait on this, not on a sleep."""
        token = uuid.uuid4().hex
        self.patch(kind, name, {"metadata": {"annotations": {"galley.dev/reconcile-requested-at": token}}})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            body = self.get(kind, name)
            if (body.get("status") or {}).get("lastHandledReconcileAt") == token:
                return body
            time.sleep(0.2)
        raise TimeoutError(f"{kind} {name}: no reconcile handled request {token}\n{self.operator_log()}")

    def play_kubelet(self, pod: str, status: dict[str, Any]) -> None:
        """No kubelet here: set a pod's status the way one would."""
        self.core.patch_namespaced_pod_status(pod, self.namespace, {"status": status})


def new_namespace(envtest: Envtest, s3_endpoint: str, tmp_path: Path) -> Cluster:
    """A fresh namespace holding the ``s3-credentials`` Secret; no operator yet."""
    namespace = f"op-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(envtest.api).create_namespace({"metadata": {"name": namespace}})
    secret = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value-never-shown",
              "AWS_ENDPOINT_URL": s3_endpoint, "AWS_DEFAULT_REGION": "us-east-1"}
    client.CoreV1Api(envtest.api).create_namespaced_secret(namespace, {
        "metadata": {"name": "s3-credentials"},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in secret.items()}})
    return Cluster(envtest, namespace, tmp_path / "operator.log", s3_endpoint)


@pytest.fixture
def cluster(envtest: Envtest, s3: Any, s3_endpoint: str, tmp_path: Path) -> Iterator[Cluster]:
    found = new_namespace(envtest, s3_endpoint, tmp_path)
    with operator_process(envtest, found.namespace, found.log):
        yield found
