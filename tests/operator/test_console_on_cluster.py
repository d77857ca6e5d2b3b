"""``galley console --cluster`` against the real API server, with the operator running: it lists
what is there, creates a TrainingJob from the form (which the operator then runs), refuses a bad
form without creating anything, and Stop/Start change exactly what ``galley stop|start --cluster``
change. Changes need the console's token, and a change from another site is refused.

No kubelet runs here, so the trainer pod is given its phase by the test (``play_kubelet``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from galley.testing.operator import eventually
from galley.testing.processes import console
from tests.operator.conftest import Cluster
from tests.operator.test_services import online_service
from tests.operator.test_trainingjobs import trainer_pod

pytestmark = pytest.mark.envtest
TOKEN = "console-test-token"


@pytest.fixture
def web(cluster: Cluster) -> Iterator[httpx.Client]:
    env = {**os.environ, "KUBECONFIG": str(cluster.env.kubeconfig)}
    with console("--cluster", "-n", cluster.namespace, "--token", TOKEN, env=env) as url, \
            httpx.Client(base_url=url, timeout=30) as client:
        yield client


def job_form(name: str = "food") -> dict[str, str]:
    return {"name": name, "algorithm": "resnet50", "dataset": "s3://galley-data/food/",
            "learning_rate_strategy": "20:0.001", "flavor": "gpu-v100-1", "nodes": "1",
            "output": "s3://galley-output/food/", "secret": "s3-credentials", "action": "create"}


def test_create_from_the_form_makes_a_training_job_the_operator_runs(cluster: Cluster, web: httpx.Client,
                                                                    s3: Any) -> None:
    refused = web.post("/create", data=job_form())
    assert refused.status_code == 401 and "token" in refused.text  # no token yet: nothing is created
    web.get(f"/?token={TOKEN}")  # the address the console prints: the token becomes a cookie
    bad = web.post("/create", data={**job_form(), "flavor": "gpu-a100-8"})
    assert bad.status_code == 422
    assert 'data-field="flavor"' in bad.text and "unknown flavor &#39;gpu-a100-8&#39;" in bad.text
    assert cluster.objects.list_namespaced_custom_object(
        "galley.dev", "v1alpha1", cluster.namespace, "trainingjobs")["items"] == []

    created = web.post("/create", data=job_form(), follow_redirects=False)
    assert created.status_code == 303 and created.headers["location"] == "/trainingjobs/food"
    spec = cluster.get("TrainingJob", "food")["spec"]
    assert spec["hyperparameters"] == {"learning_rate_strategy": "20:0.001"}
    assert spec["resources"] == {"flavor": "gpu-v100-1", "nodes": 1}
    assert spec["storage"] == {"secretRef": "s3-credentials"}
    cluster.play_kubelet(trainer_pod(cluster, "food"), {"phase": "Running"})
    eventually(lambda: cluster.status("TrainingJob", "food").get("phase") == "Running", message=cluster.operator_log)
    page = web.get("/trainingjobs/food")
    assert page.status_code == 200 and '<dd id="phase">Running</dd>' in page.text
    assert "food" in web.get("/").text

    again = web.post("/create", data=job_form())
    assert again.status_code == 422 and "TrainingJob &#39;food&#39; already exists" in again.text


def test_stop_and_start_change_what_the_cli_changes(cluster: Cluster, web: httpx.Client) -> None:
    cluster.create(online_service(model="no-such-model"))
    foreign = web.post("/services/food-service/stop", headers={"Origin": "http://evil.example",
                                                                "Authorization": f"Bearer {TOKEN}"})
    assert foreign.status_code == 403
    assert cluster.get("OnlineService", "food-service")["spec"].get("stopped") in (None, False)

    signed = {"Authorization": f"Bearer {TOKEN}"}
    stopped = web.post("/services/food-service/stop", headers=signed, follow_redirects=False)
    assert stopped.status_code == 303
    assert cluster.get("OnlineService", "food-service")["spec"]["stopped"] is True
    started = web.post("/services/food-service/start", headers=signed, follow_redirects=False)
    assert started.status_code == 303
    body = cluster.get("OnlineService", "food-service")
    assert body["spec"]["stopped"] is False and body["metadata"]["annotations"]["galley.dev/start"]

    assert web.get("/services/food-service").status_code == 401  # reads need the token too
    page = web.get("/services/food-service", headers=signed)
    assert page.status_code == 200 and "ModelNotFound" in page.text
    assert web.get("/services/nope", headers=signed).status_code == 404


def test_the_data_page_on_a_cluster_reads_no_local_path(web: httpx.Client, food_photos: Any) -> None:
    """A local path on a cluster is a folder of the trainer's pod; read by the console it would be the
    console's own disk (in a pod: its image and mounts). It is refused, and no photo of it comes back."""
    signed = {"Authorization": f"Bearer {TOKEN}"}
    local = str(food_photos.root)
    page = web.get("/data", params={"uri": local}, headers=signed)
    assert page.status_code == 200 and "is not an s3:// location" in page.text
    assert "水果" not in page.text  # the folder was not listed
    source = str(food_photos.holdout[0][0].relative_to(food_photos.root))
    thumbnail = web.get("/data/thumbnail", params={"uri": local, "source": source}, headers=signed)
    assert thumbnail.status_code == 404
