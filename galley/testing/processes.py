"""Starting Galley's servers as real processes on loopback ports, for tests and benchmarks."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(process: subprocess.Popen[Any]) -> None:
    """Terminate, then kill what does not exit within 15 s."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_http(url: str, process: subprocess.Popen[bytes] | None = None, timeout: float = 120) -> None:
    """Wait until ``url`` answers 200."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before {url} answered")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout}s")
        time.sleep(0.2)


@contextmanager
def predictor(model_uri: str, *extra: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """``python -m galley.predictor`` on a free port; yields its base URL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "galley.predictor", "--model", model_uri,
                                "--port", str(port), *extra], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/v2/health/ready", process)
        yield url
    finally:
        stop_process(process)


def multipart_photo(data: bytes, filename: str = "photo.jpg") -> tuple[bytes, str]:
    """A ``POST /`` body with one photo in the field ``images``, and its Content-Type."""
    boundary = "galley-photo-boundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="{filename}"\r\n'
            "Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@contextmanager
def console(*arguments: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """``galley console ARGUMENTS`` through the CLI's entry point on a free port; yields its base URL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "galley.cli", "console", "--port", str(port), *arguments],
                               env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", process)
        yield url
    finally:
        stop_process(process)
