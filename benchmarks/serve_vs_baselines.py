"""Galley's predictor against (b) the bare forward pass and (c) a minimal eager-PyTorch kserve.Model.

A ResNet50 package (random weights: no ResNet50 ImageNet weights exist offline; timing does not
depend on them) is served on 127.0.0.1 and sent real JPEG photos (Debian's Tux Paint cut-outs on
backgrounds). For 1 and 2 inference threads it prints p50/p99 latency of sequential requests and
the throughput with 8 concurrent clients, for

  (a) Galley's predictor (multipart upload to ``POST /``),
  (b) the same network's forward pass in-process with the same runtime and threads (no HTTP, no decode),
  (c) a minimal ``kserve.Model`` running the network in eager PyTorch (``benchmarks/kserve_baseline_server.py``),

and the ratios: Galley's p50 over (b), Galley's throughput over (c).

    .venv/bin/python benchmarks/serve_vs_baselines.py [--requests 40] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from galley.demo import photos
from galley.model import package
from galley.model.architectures import build
from galley.model.preprocessing import Preprocessing, decode_image
from galley.predictor.runtime import choose_runtime
from galley.testing.processes import free_port, predictor, wait_http

HERE = Path(__file__).resolve().parent
LABELS = ["凉皮", "柿子饼", "灌汤包", "肉夹馍"]


def make_package(folder: Path) -> Path:
    torch.manual_seed(0)
    network = build("resnet50", len(LABELS)).eval()
    onnx = package.export_onnx(network, 224)
    assert onnx is not None, "ONNX export failed"
    config = package.PackageConfig(name="food-resnet50", algorithm="resnet50", labels=LABELS, onnx=package.ONNX)
    package.write_package(str(folder), config, network, {package.ONNX: onnx})
    return folder


class Client:
    """A keep-alive HTTP/1.1 client with TCP_NODELAY: the client's own cost stays out of the numbers."""

    def __init__(self, url: str):
        host, port = url.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=120)
        self.connection.connect()
        self.connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def post(self, path: str, body: bytes, content_type: str) -> bytes:
        self.connection.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = self.connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status} {data[:200]!r}")
        return data


def multipart(data: bytes) -> tuple[bytes, str]:
    boundary = "galleybenchmark"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="p.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def sequential(send: Callable[[bytes], None], images: list[bytes], n: int) -> list[float]:
    send(images[0])
    times = []
    for i in range(n):
        start = time.perf_counter()
        send(images[i % len(images)])
        times.append(time.perf_counter() - start)
    return times


def concurrent(make_sender: Callable[[], Callable[[bytes], None]], images: list[bytes], clients: int,
               per_client: int) -> float:
    senders = [make_sender() for _ in range(clients)]

    def work(k: int) -> None:
        for i in range(per_client):
            senders[k](images[(k + i) % len(images)])

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(work, range(clients)))
    return clients * per_client / (time.perf_counter() - start)


@contextmanager
def kserve_baseline(weights: Path, threads: int) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, str(HERE / "kserve_baseline_server.py"), "--weights", str(weights),
                                "--classes", str(len(LABELS)), "--threads", str(threads), "--http_port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/v1/models/baseline", process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-client", type=int, default=8)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        data = photos.build(Path(scratch) / "photos", variants=1, max_per_class=4)
        images = [p.read_bytes() for p in sorted(data.root.rglob("*.jpg"))]
        folder = make_package(Path(scratch) / "model")
        config = package.read_config(str(folder))
        tensor = Preprocessing().eval_input(decode_image(images[0]))[np.newaxis]
        print(f"ResNet50 package, {len(images)} real JPEG photos, {args.requests} sequential requests, "
              f"{args.clients} clients x {args.per_client} concurrent")
        rows = []
        for threads in args.threads:
            runtime = choose_runtime(folder, config, "auto", threads)
            bare = sequential(lambda _, run=runtime.run: run(tensor), images, args.requests)

            def galley_sender(url: str) -> Callable[[], Callable[[bytes], None]]:
                def make() -> Callable[[bytes], None]:
                    client = Client(url)
                    return lambda data: client.post("/", *multipart(data)) and None
                return make

            def kserve_sender(url: str) -> Callable[[], Callable[[bytes], None]]:
                def make() -> Callable[[bytes], None]:
                    client = Client(url)

                    def send(data: bytes) -> None:
                        body = {"instances": [{"image": {"b64": base64.b64encode(data).decode()}}]}
                        client.post("/v1/models/baseline:predict", json.dumps(body).encode(), "application/json")
                    return send
                return make

            with predictor(str(folder), "--threads", str(threads)) as url:
                galley_lat = sequential(galley_sender(url)(), images, args.requests)
                galley_tput = concurrent(galley_sender(url), images, args.clients, args.per_client)
            with kserve_baseline(folder / package.WEIGHTS, threads) as url:
                kserve_lat = sequential(kserve_sender(url)(), images, args.requests)
                kserve_tput = concurrent(kserve_sender(url), images, args.clients, args.per_client)
            rows.append((threads, runtime.name, percentiles(galley_lat), galley_tput, percentiles(bare),
                         percentiles(kserve_lat), kserve_tput))
    print()
    print(f"{'threads':>7} {'':22}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}")
    for threads, runtime, g, g_tput, b, k, k_tput in rows:
        print(f"{threads:>7} {'(a) galley ' + runtime:22}{g[0]:>9.1f}{g[1]:>9.1f}{g_tput:>9.1f}")
        print(f"{'':>7} {'(b) bare forward':22}{b[0]:>9.1f}{b[1]:>9.1f}{1000 / b[0]:>9.1f}")
        print(f"{'':>7} {'(c) kserve eager':22}{k[0]:>9.1f}{k[1]:>9.1f}{k_tput:>9.1f}")
        print(f"{'':>7} p50 galley/bare {g[0] / b[0]:.2f}x (goal <= 1.25x); "
              f"throughput galley/kserve {g_tput / k_tput:.2f}x (goal >= 1.8x)")


if __name__ == "__main__":
    main()
