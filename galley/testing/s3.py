"""A real S3 endpoint for tests: ``moto_server`` on a loopback port (or on the address pods reach)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextmanager
def moto_server(host: str = "127.0.0.1") -> Iterator[str]:
    """Run moto's S3 server on ``host``; yields its endpoint URL."""
    port = _free_port(host)
    executable = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    process = subprocess.Popen([executable, "-H", host, "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.2)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)
