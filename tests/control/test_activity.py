"""The activity probe asks one pod address and port, and nothing else: no redirect, no proxy, no name.

Real HTTP servers on loopback play the predictor, the place a redirect points to, and a proxy;
each records the requests it received, so a test can say which of them was reached.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from galley.control.activity import MAX_ANSWER_BYTES, ask_activity, read_activity

LAST = b'{"lastPredictionTime": "2026-11-26T08:00:00Z", "predictions": 3}'
Answer = Callable[[BaseHTTPRequestHandler], None]


@contextmanager
def server(answer: Answer) -> Iterator[tuple[int, list[str]]]:
    """An HTTP server on 127.0.0.1 answering every GET with ``answer``; yields its port and the paths it was asked."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            answer(self)

        def log_message(self, *_: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], asked
    finally:
        httpd.shutdown()
        httpd.server_close()


def json_answer(body: bytes = LAST) -> Answer:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    return answer


def redirect_to(location: str) -> Answer:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    return answer


def test_a_predictor_is_read() -> None:
    with server(json_answer()) as (port, asked):
        activity = read_activity([("127.0.0.1", port)], timeout=2)
    assert activity.known and activity.last_prediction is not None
    assert activity.last_prediction.isoformat() == "2026-11-26T08:00:00+00:00"
    assert asked == ["/api/activity"]


def test_a_redirect_is_not_followed() -> None:
    with server(json_answer()) as (elsewhere, reached), \
            server(redirect_to(f"http://127.0.0.1:{elsewhere}/api/activity")) as (port, asked):
        activity = read_activity([("127.0.0.1", port)], timeout=2)
    assert asked == ["/api/activity"]
    assert reached == [], "the probe followed the redirect to another server"
    assert not activity.known  # a replica that answers with a redirect counts as busy


def test_http_proxy_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    with server(json_answer(b'{"lastPredictionTime": null}')) as (proxy, proxied), \
            server(json_answer()) as (port, asked):
        for variable in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(variable, f"http://127.0.0.1:{proxy}")
        for variable in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(variable, raising=False)
        activity = read_activity([("127.0.0.1", port)], timeout=2)
    assert proxied == [], "the probe went through HTTP_PROXY"
    assert asked == ["/api/activity"] and activity.last_prediction is not None


@pytest.mark.parametrize("address", ["localhost", "predictor.default.svc.cluster.local", "127.1", ""])
def test_only_an_ip_address_is_asked(address: str) -> None:
    """A name could be pointed anywhere by DNS; ``127.1`` is an address only to inet_aton."""
    with server(json_answer()) as (port, asked):
        assert not read_activity([(address, port)], timeout=2).known
        with pytest.raises(ValueError):
            ask_activity(address, port, timeout=2)
    assert asked == []


def test_a_slow_drip_is_cut_at_the_timeout() -> None:
    """The timeout bounds the whole exchange, not each read: one byte every 0.2 s does not hold it."""
    def drip(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.end_headers()
        try:
            for _ in range(100):
                handler.wfile.write(b" ")
                handler.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass

    with server(drip) as (port, _):
        started = time.monotonic()
        assert not read_activity([("127.0.0.1", port)], timeout=1).known
        assert time.monotonic() - started < 2


@pytest.mark.parametrize(("case", "answer"), [
    ("not found", lambda h: (h.send_error(404))),
    ("too long", json_answer(b" " * (MAX_ANSWER_BYTES + 10) + LAST)),
    ("not JSON", json_answer(b"<html>")),
    ("not an activity", json_answer(b'{"status": "alive"}')),
    ("a time with no UTC offset", json_answer(b'{"lastPredictionTime": "2024-05-01T11:00:00"}')),
])
def test_answers_that_are_not_an_activity_count_as_busy(case: str, answer: Answer) -> None:
    with server(answer) as (port, asked):
        assert not read_activity([("127.0.0.1", port)], timeout=2).known, case
    assert asked == ["/api/activity"]


def test_one_silent_replica_makes_the_reading_unknown() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        silent = closed.getsockname()[1]  # bound, never listening: refused
        with server(json_answer()) as (port, _):
            assert not read_activity([("127.0.0.1", port), ("127.0.0.1", silent)], timeout=1).known
            assert read_activity([("127.0.0.1", port)], timeout=1).known
    assert not read_activity([], timeout=1).known


def test_a_prediction_time_in_the_future_counts_as_now() -> None:
    """A replica that claims a prediction in year 9999 would keep the service from ever idling."""
    from datetime import UTC, datetime

    with server(json_answer(b'{"lastPredictionTime": "9999-12-31T23:59:59Z"}')) as (port, _):
        reading = read_activity([("127.0.0.1", port)], timeout=2)
    assert reading.known and reading.last_prediction is not None
    assert reading.last_prediction <= datetime.now(UTC)
