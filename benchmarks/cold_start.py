"""Cold start of an OnlineService on the real node of ``scripts/cluster``, with the image present.

Measured, each ``--rounds`` times, from the moment the change is applied to the first successful
``POST /`` with a real photo, sent straight to the predictor pod's address on the pod bridge:

* **deploy**: an OnlineService applied while its Model is Ready;
* **start**: the ``galley.dev/start`` annotation on a service that stopped by itself (autoStop);
* **floor** (the baseline, same run): a bare Deployment of the same predictor image serving a
  static page (``python -m http.server``): what any pod costs on this node before Galley loads a model.

Goal: deploy and start each at most 10 s. The cloud platform of the seed takes about 3 minutes
to deploy. Usage (as root): ``python benchmarks/cold_start.py [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from galley.testing.node import Node, condition, node
from galley.testing.operator import eventually
from galley.testing.processes import multipart_photo

GOAL_SECONDS = 10.0
NAMESPACE = "cold-start"
BUCKET = "cold-start"
LABELS = ["凉皮", "柿子饼", "灌汤包", "肉夹馍"]


def write_package(endpoint: str) -> str:
    """A MobileNetV2 package (ImageNet weights from the install, an ONNX graph) in moto."""
    import boto3

    from galley.model import package
    from galley.model.architectures import build
    from galley.model.config import PackageConfig
    from galley.trainer.weights import mobilenet_v2_weights

    os.environ.update({"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench",
                       "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_DEFAULT_REGION": "us-east-1"})
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    import torch

    network = build("mobilenet_v2", len(LABELS))
    state = torch.load(mobilenet_v2_weights(), map_location="cpu", weights_only=True)
    network.load_state_dict({k: v for k, v in state.items() if not k.startswith("classifier.")}, strict=False)
    uri = f"s3://{BUCKET}/model/"
    onnx = package.export_onnx(network, 224)
    assert onnx is not None, "ONNX export failed"
    config = PackageConfig(name="cold-start", algorithm="mobilenet_v2", labels=LABELS, onnx=package.ONNX)
    package.write_package(uri, config, network, {package.ONNX: onnx})
    return uri


def photo() -> bytes:
    from galley.demo import photos

    with tempfile.TemporaryDirectory() as scratch:
        built = photos.build(Path(scratch), variants=1, max_per_class=1, seed=3)
        return Path(built.holdout[0][0]).read_bytes()


def first_answer(url: str, body: bytes, content_type: str, deadline: float) -> None:
    """POST until the first 200 (or GET when ``body`` is empty)."""
    while time.monotonic() < deadline:
        request = urllib.request.Request(url, data=body or None, method="POST" if body else "GET",
                                         headers={"Content-Type": content_type} if body else {})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    response.read()
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"no answer from {url}")


def pod_ip(cluster: Node, selector: str) -> str | None:
    for pod in cluster.get("pods", "-n", NAMESPACE, "-l", selector)["items"]:
        if not pod["metadata"].get("deletionTimestamp") and (pod.get("status") or {}).get("podIP"):
            return str(pod["status"]["podIP"])
    return None


def timed(cluster: Node, act: Callable[[], object], selector: str, path_body: tuple[str, bytes, str]) -> float:
    """Seconds from ``act()`` to the first 200 from a pod matching ``selector``."""
    path, body, content_type = path_body
    start = time.monotonic()
    act()
    ip = eventually(lambda: pod_ip(cluster, selector), timeout=120, interval=0.1, message=f"a pod for {selector}")
    first_answer(f"http://{ip}:8080{path}", body, content_type, start + 180)
    return time.monotonic() - start


def apply(cluster: Node, manifest: Mapping[str, object]) -> None:
    cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=json.dumps(manifest))


def auto_stopped(cluster: Node, name: str) -> bool:
    return (condition(cluster.get("osvc", name, "-n", NAMESPACE), "Stopped") or {}).get("reason") == "AutoStopped"


def no_pods(cluster: Node, selector: str) -> bool:
    """No pod in the namespace matches ``selector`` (every pod for an empty one)."""
    return not cluster.get("pods", "-n", NAMESPACE, *(["-l", selector] if selector else []))["items"]


def bare_deployment(name: str, image: str) -> dict[str, object]:
    """The baseline: the predictor image serving a static page, nothing loaded."""
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"floor": name}},
                     "template": {"metadata": {"labels": {"floor": name}}, "spec": {
                         "terminationGracePeriodSeconds": 1,
                         "containers": [{"name": "http", "image": image, "imagePullPolicy": "Never",
                                         "command": ["python", "-m", "http.server", "8080"]}]}}}}


def model_ready(cluster: Node) -> bool:
    return (condition(cluster.get("model", "dishes", "-n", NAMESPACE), "Ready") or {}).get("status") == "True"


def operator_ready(cluster: Node) -> bool:
    return any((condition(p, "Ready") or {}).get("status") == "True"
               for p in cluster.get("pods", "-n", "galley-system")["items"])


def ensure_operator(cluster: Node) -> None:
    """The chart at the images built now (an earlier install may point at images since replaced)."""
    cluster.helm("upgrade", "--install", "galley", "helm/galley", "-n", "galley-system", "--create-namespace",
                 "-f", cluster.helm_values, "--wait")
    eventually(partial(operator_ready, cluster), timeout=180, message="the operator")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each kind (default 3)")
    args = parser.parse_args()
    from galley.testing.s3 import moto_server

    image = photo()
    body, content_type = multipart_photo(image)
    with node() as cluster, moto_server(cluster.host_ip) as endpoint:
        uri = write_package(endpoint)
        ensure_operator(cluster)
        cluster.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true", timeout=180)
        cluster.kubectl("create", "namespace", NAMESPACE)
        cluster.kubectl("create", "secret", "generic", "s3", "-n", NAMESPACE,
                        "--from-literal=AWS_ACCESS_KEY_ID=bench", "--from-literal=AWS_SECRET_ACCESS_KEY=bench-secret",
                        f"--from-literal=AWS_ENDPOINT_URL={endpoint}", "--from-literal=AWS_DEFAULT_REGION=us-east-1")
        cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=json.dumps({
            "apiVersion": "galley.dev/v1alpha1", "kind": "Model", "metadata": {"name": "dishes"},
            "spec": {"source": {"uri": uri}, "version": "0.0.1", "storage": {"secretRef": "s3"}}}))
        eventually(partial(model_ready, cluster), timeout=120, message="the Model to be Ready")
        deploys, starts, floors = [], [], []
        predict = ("/", body, content_type)
        for round_ in range(args.rounds):
            name, selector = f"dishes-{round_}", f"galley.dev/online-service=dishes-{round_}"
            service = {"apiVersion": "galley.dev/v1alpha1", "kind": "OnlineService", "metadata": {"name": name},
                       "spec": {"model": "dishes", "flavor": "cpu-1c-4g", "runtime": "raw",
                                "autoStop": {"after": "20s"}, "storage": {"secretRef": "s3"}}}
            deploys.append(timed(cluster, partial(apply, cluster, service), selector, predict))
            eventually(partial(auto_stopped, cluster, name), timeout=180, message="the autostop")
            eventually(partial(no_pods, cluster, selector), timeout=120, message="the predictor pod to go")
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            starts.append(timed(cluster, partial(cluster.kubectl, "annotate", "-n", NAMESPACE, "osvc", name,
                                                 f"galley.dev/start={stamp}", "--overwrite"), selector, predict))
            cluster.kubectl("delete", "-n", NAMESPACE, "osvc", name, "--wait=false")
            floor = bare_deployment(f"floor-{round_}", predictor_image(cluster))
            floors.append(timed(cluster, partial(apply, cluster, floor), f"floor=floor-{round_}", ("/", b"", "")))
            cluster.kubectl("delete", "-n", NAMESPACE, "deployment", f"floor-{round_}", "--wait=false")
            # The next round starts on an empty node: a predictor pod still terminating holds its CPU
            # request, and the scheduler would wait for it.
            eventually(partial(no_pods, cluster, ""), timeout=120, message="this round's pods to go")
            print(f"round {round_ + 1}: deploy {deploys[-1]:.2f}s, start {starts[-1]:.2f}s, floor {floors[-1]:.2f}s",
                  flush=True)
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false")
    report(deploys, starts, floors)


def predictor_image(cluster: Node) -> str:
    for line in Path(cluster.helm_values).read_text().splitlines():
        if line.strip().startswith("image:") and "predictor" in line:
            return line.split(":", 1)[1].strip()
    raise RuntimeError(f"no predictor image in {cluster.helm_values}")


def report(deploys: list[float], starts: list[float], floors: list[float]) -> None:
    floor = statistics.median(floors)
    print(f"\ncold start on a warm node, image present (median of {len(deploys)}; goal {GOAL_SECONDS:.0f} s)")
    print(f"{'':34} {'median':>8} {'max':>7} {'/ goal':>7} {'/ floor':>8}")
    for label, values in (("OnlineService applied -> answer", deploys), ("start annotation -> answer", starts),
                          ("floor: bare Deployment -> answer", floors)):
        median = statistics.median(values)
        print(f"{label:34} {median:7.2f}s {max(values):6.2f}s {median / GOAL_SECONDS:7.2f} {median / floor:8.2f}")


if __name__ == "__main__":
    main()
