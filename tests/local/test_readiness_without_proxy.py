"""The embedded supervisor asks its predictor on loopback directly: an HTTP_PROXY in the user's
environment (common behind a corporate proxy, often without NO_PROXY) must not swallow the
readiness check, or a healthy predictor never becomes Ready."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from galley.local.services import Predictor


class Ready(http.server.BaseHTTPRequestHandler):
    """A predictor's readiness route, and a proxy that answers 503 to everything."""

    def do_GET(self) -> None:
        ok = self.path == "/v2/health/ready"
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def server() -> Iterator[int]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()


def test_readiness_is_asked_directly_whatever_http_proxy_says(server: int, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ready)  # a proxy gets the full URL as its path: 503
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.server_address[1]}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert Predictor(process, f"http://127.0.0.1:{server}/").ready() is True
    finally:
        process.kill()
        proxy.shutdown()
