"""``galley console --cluster`` as an attacker meets it, on the real API server: the test-page proxy
goes through the API server's service proxy with the kubeconfig's credentials, so a path that
climbs out of it would read the namespace's Secrets as whoever started the console. Each
spelling that did so (``..%2F``, ``../``, ``%2E%2E/``) and its relatives get a 400, and no Secret's
bytes come back.

No operator runs here: the OnlineService's status says Running, as the operator would write it
once a predictor is Ready, so the console does send what it lets through.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from galley.testing.envtest import Envtest
from galley.testing.processes import console
from tests.console.test_console_security import ATTACKS, ask
from tests.operator.conftest import Cluster, new_namespace

pytestmark = pytest.mark.envtest
TOKEN = "proxy-test-token"
SECRET_VALUE = "s3cr3t-value-never-shown"
"""The value ``new_namespace`` puts in the namespace's ``s3-credentials`` Secret."""


@pytest.fixture
def running(envtest: Envtest, s3_endpoint: str, tmp_path: Any) -> Cluster:
    found = new_namespace(envtest, s3_endpoint, tmp_path)
    found.create({"apiVersion": "galley.dev/v1alpha1", "kind": "OnlineService", "metadata": {"name": "food"},
                  "spec": {"model": "food-model"}})
    found.objects.patch_namespaced_custom_object_status(
        "galley.dev", "v1alpha1", found.namespace, "onlineservices", "food",
        {"status": {"phase": "Running", "url": f"http://food-predictor.{found.namespace}.svc.cluster.local/"}})
    return found


@pytest.fixture
def port(running: Cluster) -> Iterator[int]:
    env = {**os.environ, "KUBECONFIG": str(running.env.kubeconfig)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    with console("--cluster", "-n", running.namespace, "--token", TOKEN, env=env) as url:
        yield urlsplit(url).port or 80


SIGNED = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize("attack", ATTACKS)
def test_no_path_through_the_proxy_reaches_the_namespaces_secrets(port: int, attack: str) -> None:
    status, _, body = ask(port, "/services/food/page/" + attack, headers=SIGNED)
    assert status == 400, (attack, status, body[:300])
    assert SECRET_VALUE not in body and base64.b64encode(SECRET_VALUE.encode()).decode() not in body
    assert "SecretList" not in body


def test_the_predictors_routes_still_go_to_its_service(port: int) -> None:
    """What passes goes to the predictor Service's proxy: with no such Service here, the API server
    says which Service it was asked for, which shows where the request went."""
    status, headers, body = ask(port, "/services/food/page/v2/models", headers=SIGNED)
    assert status == 404 and 'services \\"food-predictor\\" not found' in body, (status, body[:300])
    assert SECRET_VALUE not in body
    assert headers["content-security-policy"].startswith("sandbox")
