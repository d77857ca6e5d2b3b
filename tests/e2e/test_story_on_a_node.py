"""The seed's story on a real node: ``helm install``, then ``kubectl apply``, then a prediction.

Everything runs for real: the chart's operator as a pod under its ServiceAccount and RBAC, the
trainer and the predictor in their images on a kubelet, S3 (moto) reached over the pod network.
Only the GPU is missing: the TrainingJob uses a CPU flavor, and the V100 path is covered by the
builder and operator tests. KServe's controller images cannot run here, so the service uses the
raw runtime.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from galley.testing.node import Node, condition, node
from galley.testing.operator import eventually
from galley.testing.processes import free_port, multipart_photo
from tests import podsecurity

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

NAMESPACE = "default"
BUCKET = "food"
EPOCHS = 10
AUTO_STOP_SECONDS = 75
IDLE_SECONDS = 25
"""Shorter than AUTO_STOP_SECONDS: after the restart the idle stop comes first."""
OPERATOR = "app.kubernetes.io/name=galley"
CONSOLE = "app.kubernetes.io/name=galley-console"
PREDICTOR = "galley.dev/online-service=food-service"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Node]:
    """The node, left as the test found it: resources, Secret and the chart's release removed."""
    with node() as ready:
        try:
            yield ready
        finally:
            ready.kubectl("delete", "osvc,models,trainingjobs", "--all", "-n", NAMESPACE, "--wait=true",
                          check=False, timeout=180)
            ready.kubectl("delete", "secret", "s3-credentials", "-n", NAMESPACE, "--ignore-not-found", check=False)
            ready.helm("uninstall", "galley", "-n", "galley-system", "--wait", check=False)


@pytest.fixture(scope="module")
def s3_on_the_pod_network(cluster: Node) -> Iterator[str]:
    """moto on the bridge's gateway address, where pods reach this machine."""
    from galley.testing.s3 import moto_server

    with moto_server(cluster.host_ip) as endpoint:
        yield endpoint


def upload_photos_and_weights(endpoint: str, photos: Any, weights: str) -> None:
    """The real photo set with Chinese labels and its ModelArts manifest, and the ImageNet weights."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="e2e", aws_secret_access_key="e2e-secret")
    s3.create_bucket(Bucket=BUCKET)
    root = Path(photos.root)
    for path in sorted(root.rglob("*")):
        if path.is_file():
            s3.upload_file(str(path), BUCKET, f"data/{path.relative_to(root).as_posix()}")
    s3.upload_file(weights, BUCKET, "weights/mobilenet_v2.pth")


def manifests(secret: str) -> str:
    return f"""
apiVersion: galley.dev/v1alpha1
kind: TrainingJob
metadata: {{name: food-mobilenet}}
spec:
  algorithm: {{name: mobilenet_v2, weights: "s3://{BUCKET}/weights/mobilenet_v2.pth"}}
  dataset: {{uri: "s3://{BUCKET}/data/dataset.manifest", format: manifest}}
  hyperparameters: {{learning_rate_strategy: "{EPOCHS}:0.001", image_size: "160", batch_size: "16"}}
  output: {{uri: "s3://{BUCKET}/output/"}}
  logs: {{uri: "s3://{BUCKET}/log/"}}
  storage: {{secretRef: {secret}}}
  resources: {{flavor: cpu-1c-4g, nodes: 1}}
  runPolicy: {{backoffLimit: 3}}
---
apiVersion: galley.dev/v1alpha1
kind: Model
metadata: {{name: food-model}}
spec:
  source: {{trainingJob: food-mobilenet}}
  version: 0.0.1
  storage: {{secretRef: {secret}}}
---
apiVersion: galley.dev/v1alpha1
kind: OnlineService
metadata: {{name: food-service}}
spec:
  model: food-model
  flavor: cpu-1c-4g
  runtime: raw
  autoStop: {{after: {AUTO_STOP_SECONDS}s}}
"""


def galley_cli(cluster: Node, *args: str) -> str:
    """The ``galley`` command as a user on this machine runs it (kubeconfig and kubectl of the node)."""
    result = subprocess.run([str(Path(sys.executable).with_name("galley")), *args], capture_output=True,
                            text=True, timeout=120, env={**cluster.env(), "KUBECTL": cluster.kubectl_path})
    assert result.returncode == 0, f"galley {' '.join(args)}: {result.stderr.strip()}"
    return result.stdout


@contextmanager
def galley_port_forward(cluster: Node, target: str) -> Iterator[str]:
    """``galley port-forward`` on a free port, until kubectl says it is forwarding."""
    port = free_port()
    process = subprocess.Popen([str(Path(sys.executable).with_name("galley")), "port-forward", target, "-n",
                                NAMESPACE, "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env={**cluster.env(), "KUBECTL": cluster.kubectl_path})
    try:
        assert process.stdout is not None
        seen = [process.stdout.readline() for _ in range(2)]
        assert f"test page at http://127.0.0.1:{port}/" in seen[0] and "Forwarding from" in seen[1], seen
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def pods(cluster: Node, selector: str, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get("pods", "-n", namespace, "-l", selector)["items"]
    return items


def running_pod(cluster: Node, selector: str, namespace: str = NAMESPACE) -> str | None:
    """The name of a Ready pod matching ``selector`` that is not being deleted."""
    for pod in pods(cluster, selector, namespace):
        ready = condition(pod, "Ready")
        if ready and ready["status"] == "True" and not pod["metadata"].get("deletionTimestamp"):
            return str(pod["metadata"]["name"])
    return None


def post_photo(base: str, photo: Path) -> dict[str, Any]:
    """``POST /`` with the multipart field ``images``, as the cloud platform's clients send it."""
    body, content_type = multipart_photo(photo.read_bytes(), photo.name)
    request = urllib.request.Request(base + "/", data=body, method="POST", headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def owned_children(cluster: Node) -> dict[str, int]:
    """How many of each child the operator made exist (a duplicate shows as a count above 1)."""
    counts = {}
    for kind in ("jobs", "deployments", "services"):
        items = cluster.get(kind, "-n", NAMESPACE, "-l", "app.kubernetes.io/managed-by=galley")["items"]
        counts[kind] = len(items)
    return counts


def test_helm_install_then_train_serve_predict_autostop_and_start(
        cluster: Node, s3_on_the_pod_network: str, food_photos: Any, mobilenet_weights: str, tmp_path: Path) -> None:
    endpoint = s3_on_the_pod_network
    upload_photos_and_weights(endpoint, food_photos, mobilenet_weights)

    # 1. helm install: the operator runs as a pod under the chart's ServiceAccount.
    # Progress records are read every 2 s (10 by default), so that the test sees the first epoch end.
    cluster.helm("install", "galley", "helm/galley", "--namespace", "galley-system", "--create-namespace",
                 "-f", cluster.helm_values, "--set", "reconcileInterval=2", "--set", "console.enabled=true",
                 "--set", f"console.namespace={NAMESPACE}")
    operator = eventually(lambda: running_pod(cluster, OPERATOR, "galley-system"), timeout=180,
                          message="the operator pod to be Ready")
    operator_pod = cluster.get("pod", operator, "-n", "galley-system")
    assert operator_pod["spec"]["serviceAccountName"] == "galley-operator"

    # The story's namespace enforces Pod Security "restricted". Kubernetes 1.20 has no Pod Security
    # admission and ignores the label, so the checker below, run over the pods as they ran, is what
    # proves it here; a newer API server would refuse any pod that breaks it.
    cluster.kubectl("label", "namespace", NAMESPACE, "--overwrite", "pod-security.kubernetes.io/enforce=restricted")

    # 2. Credentials in a Secret, then the three resources with kubectl apply.
    cluster.kubectl("create", "secret", "generic", "s3-credentials", "-n", NAMESPACE,
                    "--from-literal=AWS_ACCESS_KEY_ID=e2e", "--from-literal=AWS_SECRET_ACCESS_KEY=e2e-secret",
                    f"--from-literal=AWS_ENDPOINT_URL={endpoint}", "--from-literal=AWS_DEFAULT_REGION=us-east-1")
    cluster.apply(manifests("s3-credentials"))

    # Every example is accepted by this API server as it is (a server-side dry run), and both
    # GitOps overlays build with kubectl's own kustomize into resources Galley validates.
    examples = Path(__file__).resolve().parents[2] / "examples"
    for folder in sorted(examples.glob("0[1-6]-*")):
        flag = "-k" if (folder / "kustomization.yaml").exists() else "-f"
        cluster.kubectl("apply", "--dry-run=server", "-n", NAMESPACE, flag, str(folder))
    for overlay in ("dev", "prod"):
        built = cluster.kubectl("kustomize", str(examples / "07-gitops" / "overlays" / overlay))
        path = tmp_path / f"{overlay}.yaml"
        path.write_text(built)
        assert f"namespace: food-{overlay}" in built
        assert "TrainingJob/food-resnet50: valid" in galley_cli(cluster, "validate", "-f", str(path))

    # 3. Mid-training, the trainer pod is deleted; the Job's next pod resumes from the checkpoint.
    def first_epoch_done() -> int | None:
        status = cluster.get("trainingjob", "food-mobilenet").get("status") or {}
        epoch = int(status.get("epoch") or 0)
        return epoch if 1 <= epoch < EPOCHS else None

    epoch_at_kill = eventually(first_epoch_done, timeout=600, interval=0.5, message="the first epoch's checkpoint")
    first = pods(cluster, "job-name=food-mobilenet-trainer")
    assert len(first) == 1
    cluster.kubectl("delete", "pod", first[0]["metadata"]["name"], "--grace-period=1", "--wait=false")

    def succeeded() -> dict[str, Any] | None:
        job = cluster.get("trainingjob", "food-mobilenet")
        done = condition(job, "Succeeded")
        failed = condition(job, "Failed")
        if failed and failed["status"] == "True":
            pytest.fail(f"the TrainingJob failed: {failed}")  # not an AssertionError, which means "not yet"
        return job if done and done["status"] == "True" else None

    job = eventually(succeeded, timeout=900, interval=2, message="the TrainingJob to succeed")
    assert job["status"]["phase"] == "Succeeded"
    trainers = pods(cluster, "job-name=food-mobilenet-trainer")
    replacement = [p for p in trainers if p["metadata"]["name"] != first[0]["metadata"]["name"]]
    assert len(replacement) == 1, [p["metadata"]["name"] for p in trainers]
    log = cluster.kubectl("logs", replacement[0]["metadata"]["name"])
    resumed = [line for line in log.splitlines() if "resuming from the checkpoint" in line]
    assert resumed, log[-3000:]
    # "of epoch N" (a pod killed between epochs) or "taken on SIGTERM in epoch N, after batch B" (mid-epoch).
    resumed_epoch = int(re.search(r"epoch (\d+)", resumed[0]).group(1))  # type: ignore[union-attr]
    assert resumed_epoch >= epoch_at_kill
    assert resumed[0] in galley_cli(cluster, "logs", "--cluster", "-n", NAMESPACE, "tj/food-mobilenet"), \
        "galley logs --cluster reads the same pod"

    # The package and checkpoints are in S3, written from inside the pod.
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="e2e", aws_secret_access_key="e2e-secret")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="output/")["Contents"]}
    assert {"output/model/config.json", "output/model/model.onnx"} <= keys
    assert any(k.startswith("output/checkpoints/") for k in keys)

    # 4. The Model becomes Ready and records the Chinese labels.
    def model_ready() -> dict[str, Any] | None:
        model = cluster.get("model", "food-model")
        ready = condition(model, "Ready")
        return model if ready and ready["status"] == "True" else None

    model = eventually(model_ready, timeout=120, message="the Model to be Ready")
    labels = sorted(model["status"]["labels"])
    assert labels == sorted(["水果", "蔬菜", "鸟", "花"])

    # 5. The predictor pod becomes Ready; a photo posted through port-forward gets every class.
    predictor = eventually(lambda: running_pod(cluster, PREDICTOR), timeout=300,
                           message="the predictor pod to be Ready")
    photo = food_photos.holdout[0][0]
    with cluster.port_forward(f"pod/{predictor}", 8080) as base:
        answer = post_photo(base, Path(photo))
        assert sorted(name for name, _ in answer["scores"]) == labels
        assert answer["predicted_label"] == answer["scores"][0][0]
        assert abs(sum(score for _, score in answer["scores"]) - 1.0) < 1e-3
        browser = urllib.request.Request(base + "/", headers={"Accept": "text/html,application/xhtml+xml"})
        with urllib.request.urlopen(browser, timeout=10) as page:
            assert page.status == 200 and "text/html" in page.headers["Content-Type"]
            assert "<input" in page.read().decode()

    # The pods that really ran, as the API server keeps them, meet the restricted profile, with no
    # ServiceAccount token mounted: the trainer (which resumed) and the predictor.
    for pod in (replacement[0], cluster.get("pod", predictor)):
        assert podsecurity.violations(pod["spec"], pod["metadata"].get("annotations")) == [], pod["metadata"]["name"]
        mounts = [m["mountPath"] for c in pod["spec"]["containers"] for m in c.get("volumeMounts", [])]
        assert not any("serviceaccount" in m for m in mounts), mounts

    # The same through Galley's CLI: a prediction through the API server's service proxy, and
    # the test page through `galley port-forward`.
    answer = eventually(lambda: json.loads(galley_cli(cluster, "predict", "--cluster", "-n", NAMESPACE,
                                                      "food-service", str(photo), "-o", "json")),
                        timeout=60, message="galley predict --cluster to answer")
    assert sorted(name for name, _ in answer["scores"]) == labels
    with galley_port_forward(cluster, "osvc/food-service") as base, \
            urllib.request.urlopen(base + "/api/model", timeout=10) as described:
        assert sorted(json.loads(described.read())["labels"]) == labels

    # The chart's console runs as a pod under its own ServiceAccount and shows the story so far: the
    # job's curves (from the trainer pod's log, as it has no storage credentials) and the service.
    # (This node has no cluster DNS, so its embedded test page is checked on the API server tests.)
    console = eventually(lambda: running_pod(cluster, CONSOLE, "galley-system"), timeout=180,
                         message="the console pod to be Ready")
    assert cluster.get("pod", console, "-n", "galley-system")["spec"]["serviceAccountName"] == "galley-console"
    secret = cluster.get("secret", "galley-console-token", "-n", "galley-system")
    token = base64.b64decode(secret["data"]["token"]).decode()
    with cluster.port_forward("service/galley-console", 8765, namespace="galley-system") as base:
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        with opener.open(f"{base}/?token={token}", timeout=30) as overview:
            assert "food-service" in overview.read().decode()
        with opener.open(f"{base}/trainingjobs/food-mobilenet", timeout=30) as page:
            text = page.read().decode()
        assert '<dd id="phase">Succeeded</dd>' in text and 'data-series="train loss"' in text, text[-3000:]

    # The operator sees the Deployment's readiness a moment after the pod's; stopAt is set then.
    def stop_at_set() -> datetime | None:
        status = cluster.get("onlineservice", "food-service").get("status") or {}
        return datetime.fromisoformat(status["stopAt"].replace("Z", "+00:00")) if status.get("stopAt") else None

    stop_at = eventually(stop_at_set, timeout=60, message="the OnlineService to record its stopAt")
    children = owned_children(cluster)
    assert children == {"jobs": 1, "deployments": 1, "services": 1}

    # 6. The operator pod is deleted while the service runs: its replacement duplicates nothing,
    #    and the autostop still fires on time.
    cluster.kubectl("delete", "pod", operator, "-n", "galley-system", "--wait=false")
    eventually(lambda: (running_pod(cluster, OPERATOR, "galley-system") or operator) != operator, timeout=180,
               message="a new operator pod")

    def stopped() -> dict[str, Any] | None:
        service = cluster.get("onlineservice", "food-service")
        stop = condition(service, "Stopped")
        return service if stop and stop["status"] == "True" else None

    service = eventually(stopped, timeout=AUTO_STOP_SECONDS + 180, message="the service to stop by itself")
    stopped_at = datetime.now(UTC)
    assert condition(service, "Stopped")["reason"] == "AutoStopped"  # type: ignore[index]
    assert (stopped_at - stop_at).total_seconds() < 30, (stopped_at, stop_at)
    deployment = cluster.get("deployment", "food-service-predictor")
    assert deployment["spec"]["replicas"] == 0
    assert owned_children(cluster) == children

    # 7. The start annotation brings it back to a prediction; this run also stops when idle.
    cluster.kubectl("patch", "osvc", "food-service", "--type", "merge", "-p",
                    json.dumps({"spec": {"autoStop": {"idle": f"{IDLE_SECONDS}s"}}}))
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    cluster.kubectl("annotate", "osvc", "food-service", f"galley.dev/start={stamp}", "--overwrite")
    predictor = eventually(lambda: running_pod(cluster, PREDICTOR), timeout=300, message="the predictor to come back")
    with cluster.port_forward(f"pod/{predictor}", 8080) as base:
        answer = post_photo(base, Path(photo))
        assert sorted(name for name, _ in answer["scores"]) == labels
    def fresh_stop_at() -> datetime | None:
        status = cluster.get("onlineservice", "food-service").get("status") or {}
        new = datetime.fromisoformat(status["stopAt"].replace("Z", "+00:00")) if status.get("stopAt") else None
        return new if new is not None and new > stop_at else None

    eventually(fresh_stop_at, timeout=60, message="a fresh stopAt once the predictor is Ready again")
    assert owned_children(cluster) == children

    # 8. Unused since that prediction, it stops for idleness: the operator pod asked the predictor
    #    pod over the pod network when it last served one.
    service = eventually(stopped, timeout=AUTO_STOP_SECONDS, message="the service to stop when idle")
    assert condition(service, "Stopped")["reason"] == "IdleStopped"  # type: ignore[index]
    last_request = service["status"].get("lastRequestTime")
    assert last_request is not None, service["status"]
    idle_for = datetime.fromisoformat(service["status"]["stoppedAt"].replace("Z", "+00:00")) - \
        datetime.fromisoformat(last_request.replace("Z", "+00:00"))
    assert IDLE_SECONDS <= idle_for.total_seconds() < IDLE_SECONDS + 30, idle_for
    assert cluster.get("deployment", "food-service-predictor")["spec"]["replicas"] == 0
