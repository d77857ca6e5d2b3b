"""Attacks on the console, over a real embedded store and a real HTTP server (uvicorn), with the
paths sent byte for byte as an attacker's client would (``http.client``, which normalises nothing):

* the test-page proxy must not climb out of the predictor (dot segments, encoded slashes, encoded
  dots, backslashes, absolute forms), and nothing is sent before the path is checked;
* every route checks ``Host`` (DNS rebinding) and, where the console has a token, needs it for reads;
* package values are text: ``<script>`` in a label or a metric is shown, never run (the page's
  HTML is checked here; ``test_console_in_browser`` runs it in Chromium);
* a redirect from a predictor is passed back, never followed.
"""

from __future__ import annotations

import http.client
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import uvicorn

from galley.api.flavors import default_catalogue
from galley.api.resources import Model, ModelStatus, OnlineService, OnlineServiceStatus
from galley.console.app import create_app
from galley.console.security import Guard
from galley.console.server import announce
from galley.local.backend import EmbeddedBackend
from galley.testing.processes import free_port

ATTACKS = [
    "..%2F..%2F..%2Fsecrets", "../../../secrets", "%2E%2E/%2E%2E/%2E%2E/secrets", "..%2f..%2fsecrets",
    "..\\..\\secrets", "%5C..%5Csecrets", "/secrets", "//evil.example/x", "v2/../../secrets", "v2/%2e%2e/x",
    "api/model/..", "%252E%252E/secrets", "v2/models/./x", "etc/passwd", "http://169.254.169.254/",
]
"""Paths after ``/services/svc/page/`` that must be refused with a 400 before anything is sent."""


ROGUE_PAGE = "<script>fetch('/services/svc/stop', {method: 'POST'})</script>"
"""What a pod that is not Galley's predictor, but carries its label, might answer a browser at ``/``."""


class SpyPredictor(http.server.BaseHTTPRequestHandler):
    """Stands in for a predictor at ``/base/`` and records every path it is asked for."""

    asked: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.asked.append(self.path)
        if self.path == "/base/v2/moved":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:1/secrets")
            self.end_headers()
            return
        html = "text/html" in (self.headers.get("Accept") or "")
        body = b"TOP-SECRET" if "secret" in self.path else ROGUE_PAGE.encode() if html else b'{"status": "alive"}'
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if self.path == "/base/report" else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def spy() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SpyPredictor)
    SpyPredictor.asked = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/base/"
    server.shutdown()


EVIL_LABEL = "<script>window.owned = 1</script>"
EVIL_METRIC = '<img src=x onerror="window.owned = 2">'


@pytest.fixture
def backend(tmp_path: Path, spy: str) -> EmbeddedBackend:
    """A running service (its predictor is the spy) and a Model whose package carries markup."""
    store = EmbeddedBackend(tmp_path / "home")
    package = tmp_path / "package"
    package.mkdir()
    labels = [EVIL_LABEL, "plain"]
    (package / "config.json").write_text(json.dumps({
        "name": "m", "algorithm": "resnet50", "labels": labels,
        "training": {"near_duplicate_groups": EVIL_METRIC, "train_images": EVIL_METRIC, "selected_epoch": EVIL_LABEL},
        "quantization": {"int8_accuracy": EVIL_METRIC, "fp32_accuracy": 0.9, "tolerance": 0.01, "kept": False}}))
    (package / "metrics.json").write_text(json.dumps({
        "accuracy": EVIL_METRIC, "eval_images": EVIL_LABEL, "macro_f1": 0.5,
        "per_class": {EVIL_LABEL: {"precision": EVIL_METRIC, "recall": 1.0, "f1": 1.0, "support": EVIL_LABEL}},
        "confusion_matrix": {"labels": labels, "matrix": [[EVIL_METRIC, 1], [0, 2]]}}))
    model = Model.model_validate({"apiVersion": "galley.dev/v1alpha1", "kind": "Model", "metadata": {"name": "m"},
                                  "spec": {"source": {"uri": str(package)}}})
    store.apply(model)
    store.save_status(model, ModelStatus(uri=str(package), labels=labels))
    service = OnlineService.model_validate({"apiVersion": "galley.dev/v1alpha1", "kind": "OnlineService",
                                            "metadata": {"name": "svc"}, "spec": {"model": "m"}})
    store.apply(service)
    store.save_status(service, OnlineServiceStatus(phase="Running", url=spy))
    return store


def served(backend: EmbeddedBackend, guard: Guard) -> Iterator[int]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(backend, default_catalogue(), guard, where="test"),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.05)
    yield port
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def open_console(backend: EmbeddedBackend) -> Iterator[int]:
    yield from served(backend, Guard(None))


@pytest.fixture
def token_console(backend: EmbeddedBackend) -> Iterator[int]:
    yield from served(backend, Guard("right-token", allowed_hosts=["console.example"]))


def ask(port: int, path: str, host: str | None = None, headers: dict[str, str] | None = None,
        method: str = "GET") -> tuple[int, dict[str, str], str]:
    """One request with ``path`` sent exactly as given."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    connection.putheader("Host", f"127.0.0.1:{port}" if host is None else host)
    for name, value in (headers or {}).items():
        connection.putheader(name, value)
    connection.endheaders()
    response = connection.getresponse()
    headers_seen = {k.lower(): v for k, v in response.getheaders()}
    answer = response.status, headers_seen, response.read().decode("utf-8", "replace")
    connection.close()
    return answer


@pytest.mark.parametrize("attack", ATTACKS)
def test_the_proxy_refuses_paths_that_leave_the_predictor_before_sending_anything(open_console: int,
                                                                                   attack: str) -> None:
    status, _, body = ask(open_console, "/services/svc/page/" + attack)
    assert status == 400, (attack, status, body)
    assert "TOP-SECRET" not in body
    assert SpyPredictor.asked == []  # nothing left the console


def test_the_predictors_own_routes_pass_and_its_report_comes_sandboxed(open_console: int) -> None:
    status, headers, _ = ask(open_console, "/services/svc/page/v2/models/m/ready")
    assert status == 200 and headers["content-security-policy"].startswith("sandbox")
    status, headers, _ = ask(open_console, "/services/svc/page/report")
    assert status == 200 and headers["content-security-policy"].startswith("sandbox; default-src 'none'")
    assert headers["x-content-type-options"] == "nosniff"
    status, headers, _ = ask(open_console, "/services/svc/page/")  # a client that is not a browser: JSON
    assert status == 200 and headers["content-security-policy"].startswith("sandbox")
    assert SpyPredictor.asked == ["/base/v2/models/m/ready", "/base/report", "/base/"]


def test_the_test_page_is_the_consoles_own_copy_whatever_answers_behind_the_service(open_console: int) -> None:
    """Any pod with the predictor's label joins its Service; what it answers at ``/`` must not run
    on the console's origin (it could press Stop with the user's cookie)."""
    status, headers, page = ask(open_console, "/services/svc/page/", headers={"Accept": "text/html"})
    assert status == 200 and 'type="file"' in page  # Galley's page, from this installation
    assert ROGUE_PAGE not in page
    assert "frame-ancestors 'self'" in headers["content-security-policy"]
    assert SpyPredictor.asked == []  # the page was not asked of whatever answers there


def test_a_redirect_from_the_predictor_is_passed_back_not_followed(open_console: int) -> None:
    status, _, body = ask(open_console, "/services/svc/page/v2/moved")
    assert status == 302 and "TOP-SECRET" not in body
    assert SpyPredictor.asked == ["/base/v2/moved"]


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "127.0.0.1.nip.io", "localhost.evil.example",
                                  "", "127.0.0.1:80@evil.example", "[::1]evil.example", "localhost:abc"])
def test_a_host_that_is_not_the_console_gets_421_on_every_route(open_console: int, host: str) -> None:
    for path in ("/", "/models/m", "/services/svc/page/", "/create"):
        status, _, body = ask(open_console, path, host=host)
        assert status == 421, (host, path, status)
        assert "TOP-SECRET" not in body and EVIL_LABEL not in body
    assert SpyPredictor.asked == []


@pytest.mark.parametrize("host", ["127.0.0.1:8765", "localhost:8765", "LOCALHOST", "[::1]:8765", "10.1.2.3:80"])
def test_loopback_names_and_ip_literals_are_answered(open_console: int, host: str) -> None:
    assert ask(open_console, "/", host=host)[0] == 200


def test_beyond_loopback_reads_need_the_token_too(token_console: int) -> None:
    for path in ("/", "/models/m", "/services/svc", "/services/svc/page/", "/models/m/report", "/create"):
        status, _, body = ask(token_console, path, host="console.example")
        assert status == 401, (path, status)
        assert EVIL_LABEL not in body and "plain" not in body
    assert SpyPredictor.asked == []
    assert ask(token_console, "/healthz", host="10.0.0.7:8765")[0] == 200  # the kubelet's probe
    assert ask(token_console, "/", host="other.example", headers={"Authorization": "Bearer right-token"})[0] == 421
    assert ask(token_console, "/", headers={"Authorization": "Bearer wrong"})[0] == 401
    assert ask(token_console, "/", host="console.example", headers={"Authorization": "Bearer right-token"})[0] == 200
    status, headers, _ = ask(token_console, "/models/m?token=right-token")
    assert status == 303 and headers["location"] == "/models/m"
    cookie = headers["set-cookie"].split(";")[0]
    assert ask(token_console, "/models/m", headers={"Cookie": cookie})[0] == 200


def test_the_token_redirect_stays_on_the_console(token_console: int) -> None:
    status, headers, _ = ask(token_console, "//evil.example/?token=right-token")
    assert status == 303 and headers["location"] == "/evil.example/"


def test_package_markup_is_shown_as_text(open_console: int) -> None:
    status, _, page = ask(open_console, "/models/m")
    assert status == 200
    assert "<script>window.owned" not in page and "<img src=x" not in page
    assert "&lt;script&gt;window.owned = 1&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=&#34;" in page or "&lt;img src=x onerror=&quot;" in page


def test_the_token_is_printed_only_to_a_terminal() -> None:
    assert "secret-token" in announce("here", "0.0.0.0", 8765, "secret-token", terminal=True)
    logged = announce("here", "0.0.0.0", 8765, "secret-token", terminal=False)
    assert "secret-token" not in logged and "GALLEY_CONSOLE_TOKEN" in logged


ATTACKER_PAGES = {
    "/plain": '<form method="POST" action="{target}"></form><script>document.forms[0].submit()</script>',
    "/no-referrer": '<meta name="referrer" content="no-referrer"><form method="POST" action="{target}"></form>'
                    "<script>document.forms[0].submit()</script>",
    "/sandboxed": "<iframe sandbox=\"allow-forms allow-scripts\" srcdoc='<form method=\"POST\" action=\"{target}\">"
                  "</form><script>document.forms[0].submit()</script>'></iframe>",
}
"""Another site's pages that submit a form to the console: as is, with no referrer, and from a
sandboxed frame (the last two make Chromium send ``Origin: null``)."""


@pytest.mark.parametrize("page", list(ATTACKER_PAGES))
def test_another_sites_page_cannot_press_stop_in_a_real_browser(backend: EmbeddedBackend, open_console: int,
                                                                 page: str) -> None:
    from galley.testing.browser import Browser

    target = f"http://127.0.0.1:{open_console}/services/svc/stop"
    body = ("<!doctype html>" + ATTACKER_PAGES[page].format(target=target)).encode()

    class Attacker(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    site = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Attacker)  # another origin: any web site
    threading.Thread(target=site.serve_forever, daemon=True).start()
    browser = Browser()
    try:
        browser.open(f"http://127.0.0.2:{site.server_address[1]}{page}")
        browser.wait_for("document.readyState === 'complete'")
        time.sleep(2)  # the form posts and its answer loads
    finally:
        browser.close()
        site.shutdown()
    service = backend.get(OnlineService, "svc")
    assert service is not None and service.spec.stopped is False, f"{page} stopped the service"


def test_a_change_with_a_null_origin_or_a_cross_site_fetch_is_refused(backend: EmbeddedBackend,
                                                                       open_console: int) -> None:
    for headers in ({"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                    {"Origin": f"http://127.0.0.1:{open_console}.evil.example"}):
        status, _, body = ask(open_console, "/services/svc/stop", headers=headers, method="POST")
        assert status == 403 and "refused" in body, headers
    service = backend.get(OnlineService, "svc")
    assert service is not None and service.spec.stopped is False
    own = {"Origin": f"http://127.0.0.1:{open_console}", "Sec-Fetch-Site": "same-origin"}
    assert ask(open_console, "/services/svc/stop", headers=own, method="POST")[0] == 303


BIG = "9" * 400
"""An integer JSON reads, that no float holds."""
ODD_PACKAGES = {
    "a 400-digit accuracy": ('{"name": "m", "algorithm": "resnet50", "labels": ["a", "b"]}',
                             '{"accuracy": ' + BIG + ', "per_class": {"a": {"precision": ' + BIG + '}},'
                             ' "confusion_matrix": {"labels": ["a", "b"], "matrix": [[' + BIG + ', 1], [0, 1]]}}'),
    "a 5,000-digit number": ('{"name": "m", "algorithm": "resnet50", "labels": ["a", "b"]}',
                             '{"accuracy": ' + "9" * 5000 + "}"),
    "metrics nested 100,000 deep": ('{"name": "m", "algorithm": "resnet50", "labels": ["a", "b"]}',
                                    "[" * 100_000 + "]" * 100_000),
    "per_class without accuracy": ('{"name": "m", "algorithm": "resnet50", "labels": ["a", "b"]}',
                                   '{"per_class": {"a": {"precision": 1}}}'),
    "config nested 100,000 deep": ('{"name": "m", "algorithm": "resnet50", "labels": ["a", "b"], "training": '
                                   + "[" * 100_000 + "]" * 100_000 + "}", "{}"),
    "a text format_version": ('{"name": "m", "algorithm": "resnet50", "labels": ["a", "b"], "format_version": "x"}',
                              "{}"),
}


@pytest.mark.parametrize("case", list(ODD_PACKAGES))
def test_a_crafted_package_is_a_page_that_says_so_not_a_500(tmp_path: Path, case: str) -> None:
    from fastapi.testclient import TestClient

    config, metrics = ODD_PACKAGES[case]
    package = tmp_path / "odd"
    package.mkdir()
    (package / "config.json").write_text(config)
    (package / "metrics.json").write_text(metrics)
    store = EmbeddedBackend(tmp_path / "home")
    model = Model.model_validate({"apiVersion": "galley.dev/v1alpha1", "kind": "Model", "metadata": {"name": "odd"},
                                  "spec": {"source": {"uri": str(package)}}})
    store.apply(model)
    store.save_status(model, ModelStatus(uri=str(package), labels=["a", "b"]))
    web = TestClient(create_app(store, default_catalogue(), Guard(None, allowed_hosts=["testserver"]), where="test"),
                     raise_server_exceptions=False)
    page = web.get("/models/odd")
    assert page.status_code == 200, (case, page.text[-500:])


def test_the_console_reaches_its_predictor_directly_whatever_http_proxy_says(backend: EmbeddedBackend,
                                                                            tmp_path: Path) -> None:
    """A console process started with HTTP_PROXY (and no NO_PROXY) set: the uploads it passes to a
    predictor it reaches itself never go through that proxy."""
    import os

    from galley.testing.processes import console

    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SpyPredictor)  # a proxy is asked the full URL
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
    env.update(HTTP_PROXY=f"http://127.0.0.1:{proxy.server_address[1]}", http_proxy=f"http://127.0.0.1:{proxy.server_address[1]}")
    try:
        with console("--home", str(tmp_path / "home"), env=env) as url:
            port = int(url.rsplit(":", 1)[1].strip("/"))
            status, _, _ = ask(port, "/services/svc/page/v2/models/m/ready")
    finally:
        proxy.shutdown()
    assert status == 200
    assert SpyPredictor.asked == ["/base/v2/models/m/ready"]  # asked as a server is, not as a proxy ("http://...")
