"""Running the operator as a real process against the envtest API server, under its own ClusterRole."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client

from galley.operator.rbac import cluster_role
from galley.testing.envtest import Envtest
from galley.testing.processes import stop_process

OPERATOR_USER = "system:serviceaccount:galley-system:galley-operator"
T = TypeVar("T")


def grant_operator_role(env: Envtest) -> None:
    """The chart's ClusterRole, bound to the identity the operator process logs in with."""
    rbac = client.RbacAuthorizationV1Api(env.api)
    role = cluster_role()
    binding: dict[str, Any] = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "galley-operator"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "galley-operator"},
               "subjects": [{"kind": "User", "name": OPERATOR_USER, "apiGroup": "rbac.authorization.k8s.io"}]}
    creations: list[tuple[Callable[..., Any], dict[str, Any]]] = [
        (rbac.create_cluster_role, role), (rbac.create_cluster_role_binding, binding)]
    for create, body in creations:
        try:
            create(body)
        except client.ApiException as error:
            if error.status != 409:
                raise


@contextmanager
def operator_process(env: Envtest, namespace: str, log: Path, extra_env: dict[str, str] | None = None,
                     ) -> Iterator[subprocess.Popen[bytes]]:
    """``galley operator -n NAMESPACE`` logged in as the operator's service account (not as admin)."""
    grant_operator_role(env)
    environment = {**os.environ, "KUBECONFIG": str(env.kubeconfig_for("operator")),
                   "GALLEY_OPERATOR_INTERVAL": "1", **(extra_env or {})}
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "galley.operator", "-n", namespace, "--liveness", ""],
                                   env=environment, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        stop_process(process)


def eventually(check: Callable[[], T | None], timeout: float = 60, interval: float = 0.3,
               message: str | Callable[[], str] = "condition not met") -> T:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (AssertionError, client.ApiException) as error:  # not there yet
            last = error
        else:
            if last:
                return last
        time.sleep(interval)
    text = message() if callable(message) else message
    raise TimeoutError(f"{text} (last: {last!r})")
