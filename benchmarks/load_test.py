"""A load test: many clients against one predictor sized like a ``cpu-1c-4g`` OnlineService.

The predictor runs pinned to one core (``taskset``) with one inference thread, serving a
MobileNetV2 package (ImageNet weights from the install, FP32 and INT8 graphs) on 127.0.0.1.
``--clients`` keep-alive clients post real JPEG photos as fast as they are answered, for
``--seconds``, each request bounded by a timeout. Reported: answers by status, p50/p99 latency of
the successful ones, throughput, and the predictor's peak RSS against the flavor's 4 GiB. What
must hold: no 5xx other than 503 (with Retry-After), and memory under the flavor's limit.

    .venv/bin/python benchmarks/load_test.py [--clients 32] [--seconds 60]
"""

from __future__ import annotations

import argparse
import collections
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from galley.testing.processes import free_port, multipart_photo, stop_process, wait_http

FLAVOR_MEMORY = 4 * 1024**3
LABELS = ["凉皮", "柿子饼", "灌汤包", "肉夹馍"]


def make_package(folder: Path, calibration_images: list[bytes]) -> Path:
    import torch

    from galley.model import package
    from galley.model.architectures import build
    from galley.model.preprocessing import Preprocessing, decode_image
    from galley.trainer.quantize import int8_graph
    from galley.trainer.weights import mobilenet_v2_weights

    network = build("mobilenet_v2", len(LABELS))
    state = torch.load(mobilenet_v2_weights(), map_location="cpu", weights_only=True)
    network.load_state_dict({k: v for k, v in state.items() if not k.startswith("classifier.")}, strict=False)
    network.eval()
    onnx = package.export_onnx(network, 224)
    assert onnx is not None
    calibration = [Preprocessing().eval_input(decode_image(image))[None] for image in calibration_images]
    config = package.PackageConfig(name="dishes", algorithm="mobilenet_v2", labels=LABELS, onnx=package.ONNX,
                                   onnx_int8=package.ONNX_INT8, quantization={"kept": True})
    package.write_package(str(folder), config, network,
                          {package.ONNX: onnx, package.ONNX_INT8: int8_graph(onnx, calibration)})
    return folder


def client(port: int, images: list[bytes], until: float, statuses: collections.Counter[int],
           latencies: list[float], retry_after: list[str | None], lock: threading.Lock) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    i = 0
    while time.monotonic() < until:
        body, content_type = multipart_photo(images[i % len(images)])
        i += 1
        start = time.monotonic()
        try:
            connection.request("POST", "/", body, {"Content-Type": content_type})
            response = connection.getresponse()
            response.read()
            status, header = response.status, response.getheader("Retry-After")
        except (OSError, http.client.HTTPException):
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            status, header = 0, None  # a dropped connection: counted apart
        elapsed = time.monotonic() - start
        with lock:
            statuses[status] += 1
            if status == 200:
                latencies.append(elapsed)
            elif status == 503:
                retry_after.append(header)
        if status == 503:
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    from galley.demo import photos

    with tempfile.TemporaryDirectory() as scratch:
        built = photos.build(Path(scratch) / "photos", variants=1, max_per_class=4, seed=5)
        images = [p.read_bytes() for p in sorted(built.root.rglob("*.jpg"))]
        folder = make_package(Path(scratch) / "model", images)
        port = free_port()
        command = ["taskset", "-c", "0", sys.executable, "-m", "galley.predictor", "--model", str(folder),
                   "--port", str(port), "--threads", "1"]
        process = subprocess.Popen(command, env={**os.environ, "GALLEY_THREADS": "1"},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_http(f"http://127.0.0.1:{port}/v2/health/ready", process)
            statuses: collections.Counter[int] = collections.Counter()
            latencies: list[float] = []
            retry_after: list[str | None] = []
            lock = threading.Lock()
            peak = 0
            until = time.monotonic() + args.seconds
            workers = [threading.Thread(target=client, args=(port, images, until, statuses, latencies,
                                                             retry_after, lock)) for _ in range(args.clients)]
            for worker in workers:
                worker.start()
            watched = psutil.Process(process.pid)
            while any(w.is_alive() for w in workers):
                peak = max(peak, watched.memory_info().rss)
                time.sleep(0.2)
        finally:
            stop_process(process)
    served = sorted(latencies)
    other_5xx = sum(n for status, n in statuses.items() if status >= 500 and status != 503)
    print(f"{args.clients} clients for {args.seconds:.0f} s against one predictor on 1 core (cpu-1c-4g)")
    print(f"answers by status: {dict(sorted(statuses.items()))} (0 = connection dropped)")
    if served:
        p99 = served[min(len(served) - 1, int(len(served) * 0.99))]
        print(f"200s: {len(served)}, {len(served) / args.seconds:.1f} req/s, "
              f"p50 {statistics.median(served) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")
    print(f"503s with Retry-After: {sum(1 for h in retry_after if h)} of {len(retry_after)}")
    print(f"5xx other than 503: {other_5xx}; dropped connections: {statuses.get(0, 0)}")
    print(f"peak RSS {peak / 1024**2:.0f} MiB = {peak / FLAVOR_MEMORY:.2f} of the flavor's 4 GiB")


if __name__ == "__main__":
    main()
