"""The operator under stress on the real API server: replaced objects, failing calls, a store that
goes away, an operator killed at random points.

Faults come from :class:`galley.testing.faults.FaultyProxy` between the operator and
kube-apiserver (a share of calls answered 500, 429 or dropped) or S3; the state reached is the
one a quiet run reaches, and nothing is created twice.
"""

from __future__ import annotations

import base64
import random
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import watch

from galley.testing.envtest import Envtest
from galley.testing.faults import FaultyProxy
from galley.testing.operator import eventually, operator_process
from tests.operator.conftest import Cluster, new_namespace
from tests.operator.test_services import make_predictor_pods_ready, model, online_service, upload_package
from tests.operator.test_trainingjobs import training_job

COUNT = 20

pytestmark = pytest.mark.envtest


def _message(body: dict[str, Any]) -> str:
    conditions = (body.get("status") or {}).get("conditions") or []
    return next((c.get("message", "") for c in conditions if c.get("type") == "Ready"), "")


def test_a_reconcile_of_a_deleted_resource_never_writes_onto_its_successor(cluster: Cluster) -> None:
    for index in range(40):  # load: every one of these is reconciled and written while the test runs
        cluster.create(online_service(f"load-{index}", model=f"absent-{index}"))
    seen: list[tuple[int, str]] = []
    stop = threading.Event()

    def record() -> None:
        stream = watch.Watch()
        for event in stream.stream(cluster.objects.list_namespaced_custom_object, "galley.dev", "v1alpha1",
                                   cluster.namespace, "onlineservices", field_selector="metadata.name=reborn",
                                   timeout_seconds=120):
            body = event["object"]
            seen.append((int(body["metadata"]["generation"]), body["metadata"]["uid"] + " " + _message(body)))
            if stop.is_set():
                stream.stop()

    watcher = threading.Thread(target=record, daemon=True)
    watcher.start()
    uids = []
    for round_ in range(6):
        created = cluster.create(online_service("reborn", model=f"model-of-round-{round_}"))
        uids.append(created["metadata"]["uid"])
        cluster.objects.delete_namespaced_custom_object("galley.dev", "v1alpha1", cluster.namespace,
                                                        "onlineservices", "reborn")
    final = cluster.create(online_service("reborn", model="final-model"))
    eventually(lambda: "'final-model' does not exist" in _message(cluster.get("OnlineService", "reborn")),
               message=cluster.operator_log)
    stop.set()
    cluster.patch("OnlineService", "reborn", {"metadata": {"labels": {"seen": "all"}}})  # ends the watch
    watcher.join(timeout=30)
    for uid, round_ in zip(uids, range(6), strict=True):
        for _, text in seen:
            if text.startswith(final["metadata"]["uid"]):
                assert f"model-of-round-{round_}" not in text, f"a write for {uid} landed on its successor"
    written = [text for _, text in seen if text.startswith(final["metadata"]["uid"]) and text.split(" ", 1)[1]]
    assert written and all("final-model" in text for text in written), written


@contextmanager
def faulty_api(envtest: Envtest, share: float, seed: int) -> Iterator[tuple[FaultyProxy, Path]]:
    """A fault proxy in front of the API server (TLS with the server's own certificate), and a
    kubeconfig for the operator's identity that goes through it."""
    configuration = envtest.api.configuration
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certs = envtest.run_dir / "certs"
    server_ssl.load_cert_chain(certs / "apiserver.crt", certs / "apiserver.key")
    proxy = FaultyProxy(configuration.host, share=share, seed=seed, server_ssl=server_ssl,
                        client_ssl=ssl.create_default_context(cafile=configuration.ssl_ca_cert))
    url = proxy.start()
    kubeconfig = yaml.safe_load(envtest.kubeconfig_for("operator").read_text())
    for entry in kubeconfig["clusters"]:
        entry["cluster"]["server"] = url
    path = envtest.run_dir / f"kubeconfig-faulty-{seed}"
    path.write_text(yaml.safe_dump(kubeconfig))
    try:
        yield proxy, path
    finally:
        proxy.stop()


def _create_twenty_of_each(cluster: Cluster, package_uri: str) -> None:
    for index in range(COUNT):
        cluster.create(training_job(f"job-{index}"))
        cluster.create(model(f"model-{index}", uri=package_uri))
        cluster.create(online_service(f"service-{index}", model=f"model-{index}", runtime="raw"))


def _converged(cluster: Cluster) -> bool:
    """What a quiet run reaches without a kubelet: every job has its Job and is Pending, every
    Model is Ready, every service has its Deployment and Service and waits for its pods."""
    for index in range(COUNT):
        job = cluster.status("TrainingJob", f"job-{index}")
        assert job.get("phase") == "Pending", (f"job-{index}", job)
        assert cluster.condition("Model", f"model-{index}", "Ready") == ("True", "PackageReady")
        assert cluster.condition("OnlineService", f"service-{index}", "Ready") == ("False", "RollingOut")
    return True


def _children(cluster: Cluster) -> dict[str, int]:
    labelled = "app.kubernetes.io/managed-by=galley"
    return {"jobs": len(cluster.batch.list_namespaced_job(cluster.namespace, label_selector=labelled).items),
            "deployments": len(cluster.apps.list_namespaced_deployment(cluster.namespace,
                                                                       label_selector=labelled).items),
            "services": len(cluster.core.list_namespaced_service(cluster.namespace, label_selector=labelled).items)}


def test_twenty_of_each_kind_converge_through_a_faulty_api_server(envtest: Envtest, s3: Any, s3_endpoint: str,
                                                                  tmp_path: Path, trained_package: Path) -> None:
    cluster = new_namespace(envtest, s3_endpoint, tmp_path)
    package_uri = upload_package(s3, trained_package, bucket=f"faults-{cluster.namespace}")
    with faulty_api(envtest, share=0.2, seed=1) as (proxy, kubeconfig), \
            operator_process(envtest, cluster.namespace, cluster.log, {"KUBECONFIG": str(kubeconfig)}):
        _create_twenty_of_each(cluster, package_uri)
        eventually(lambda: _converged(cluster), timeout=240, interval=1, message=cluster.operator_log)
        print(f"\nfaulty API server: {proxy.summary()}")
        assert sum(proxy.injected.values()) >= 20, proxy.summary()
    assert _children(cluster) == {"jobs": COUNT, "deployments": COUNT, "services": COUNT}
    lines = cluster.log.read_text().splitlines()
    retried = [i for i, line in enumerate(lines) if "galley.operator" in line and "trying again in" in line]
    print(f"reconciles that failed and were retried: {len(retried)}")
    assert not any(i + 1 < len(lines) and lines[i + 1].startswith("Traceback") for i in retried), \
        "a failed reconcile is one line; its traceback only at debug level"


def test_an_operator_killed_at_random_points_duplicates_nothing(envtest: Envtest, s3: Any, s3_endpoint: str,
                                                                tmp_path: Path, trained_package: Path) -> None:
    cluster = new_namespace(envtest, s3_endpoint, tmp_path)
    package_uri = upload_package(s3, trained_package, bucket=f"kills-{cluster.namespace}")
    rng = random.Random(7)
    restarts = 0
    with faulty_api(envtest, share=0.1, seed=2) as (proxy, kubeconfig):
        creator = threading.Thread(target=_create_twenty_of_each, args=(cluster, package_uri))
        creator.start()
        while creator.is_alive() or restarts < 4:
            with operator_process(envtest, cluster.namespace, cluster.log, {"KUBECONFIG": str(kubeconfig)}) as op:
                time.sleep(rng.uniform(0.5, 3.0))
                op.kill()  # no goodbye: SIGKILL mid-reconcile
                op.wait()
            restarts += 1
        with operator_process(envtest, cluster.namespace, cluster.log, {"KUBECONFIG": str(kubeconfig)}):
            eventually(lambda: _converged(cluster), timeout=240, interval=1, message=cluster.operator_log)
        print(f"\n{restarts} operator kills; faulty API server: {proxy.summary()}")
    assert _children(cluster) == {"jobs": COUNT, "deployments": COUNT, "services": COUNT}
    pods = cluster.core.list_namespaced_pod(cluster.namespace, label_selector="galley.dev/training-job").items
    assert len(pods) == COUNT, "one trainer pod per job: no Job was made twice"


def test_services_keep_serving_while_storage_is_down_for_thirty_seconds(
        envtest: Envtest, s3: Any, s3_endpoint: str, tmp_path: Path, trained_package: Path) -> None:
    store = FaultyProxy(s3_endpoint)
    store_url = store.start()
    cluster = new_namespace(envtest, s3_endpoint, tmp_path)
    secret = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_ENDPOINT_URL": store_url,
              "AWS_DEFAULT_REGION": "us-east-1"}
    cluster.core.patch_namespaced_secret("s3-credentials", cluster.namespace, {
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in secret.items()}})
    package_uri = upload_package(s3, trained_package, bucket=f"outage-{cluster.namespace}")
    try:
        with operator_process(envtest, cluster.namespace, cluster.log):
            cluster.create(model("food-model", uri=package_uri))
            cluster.create(online_service(runtime="raw"))
            make_predictor_pods_ready(cluster, "food-service")
            eventually(lambda: cluster.condition("OnlineService", "food-service", "Ready") == ("True", "Serving"),
                       message=cluster.operator_log)
            store.down = True
            cluster.patch("Model", "food-model", {"metadata": {"annotations": {"touched": "during-outage"}}})
            eventually(lambda: cluster.condition("Model", "food-model", "PackageReachable")
                       == ("False", "StorageUnavailable"), timeout=60, message=cluster.operator_log)
            outage_ends = time.monotonic() + 30
            while time.monotonic() < outage_ends:  # the 30 s: watched throughout, not slept through
                assert cluster.condition("Model", "food-model", "Ready") == ("True", "PackageReady")
                assert cluster.condition("OnlineService", "food-service", "Ready") == ("True", "Serving")
                assert cluster.apps.read_namespaced_deployment("food-service-predictor",
                                                               cluster.namespace).spec.replicas == 1
                time.sleep(1)
            store.down = False
            cluster.patch("Model", "food-model", {"metadata": {"annotations": {"touched": "after-outage"}}})
            eventually(lambda: cluster.condition("Model", "food-model", "PackageReachable")
                       == ("True", "StorageReachable"), timeout=60, message=cluster.operator_log)
            print(f"\nstorage outage: {store.summary()}")
            assert store.injected["drop"] >= 1
    finally:
        store.stop()
