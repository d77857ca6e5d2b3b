"""How recently a predictor served a prediction: what idle stop decides on, read the same way by
the embedded supervisor and the operator.

Every predictor answers ``GET /api/activity`` with ``{"lastPredictionTime": <RFC 3339 or null>,
"predictions": <count>}``. Health checks, the test page and metrics scrapes do not count as use.
A replica that does not answer makes the whole reading unknown: an unreachable predictor is
counted as busy, so a network fault never stops a service that is in use. A replica is asked at
an IP address and port only (the pod's own, or the embedded predictor's loopback port), with no
redirect followed and no proxy used: the operator's network position is not lent to anyone.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

ACTIVITY_PATH = "api/activity"
LAST_PREDICTION = "lastPredictionTime"
PREDICTIONS = "predictions"
MAX_ANSWER_BYTES = 64 * 1024
"""An activity answer is about 80 bytes; a replica that sends more than this is not answering."""


@dataclass(frozen=True)
class Activity:
    """The newest prediction any replica served, and whether every replica answered."""

    last_prediction: datetime | None
    """None when no replica has served one since it started."""
    known: bool
    """False when some replica could not be asked: the service then counts as busy."""


UNKNOWN = Activity(None, False)


def parse_activity(payload: object) -> datetime | None:
    """The ``lastPredictionTime`` of one answer; ValueError when the answer is not one."""
    if not isinstance(payload, dict) or LAST_PREDICTION not in payload:
        raise ValueError(f"expected a JSON object with {LAST_PREDICTION!r}")
    value = payload[LAST_PREDICTION]
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{LAST_PREDICTION} must be a timestamp or null")
    when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if when.tzinfo is None:  # compared with aware times: a naive one would stop the reconcile with a TypeError
        raise ValueError(f"{LAST_PREDICTION} {value[:40]!r} has no UTC offset")
    return min(when, datetime.now(UTC))  # a time in the future would keep the service from ever idling


def ask_activity(address: str, port: int, timeout: float = 2.0) -> datetime | None:
    """One replica's ``lastPredictionTime``, asked at ``address`` (an IP literal) and ``port``.

    The exchange is one HTTP/1.0 GET on a plain socket, so that it can follow no redirect, use
    no proxy (``HTTP_PROXY`` is not read) and ask no name that DNS could point elsewhere, and so
    that ``timeout`` bounds the whole exchange rather than each read. OSError or ValueError when
    the replica cannot be asked or its answer is not one.
    """
    ip = ipaddress.ip_address(address)  # ValueError for a host name: only an address is asked
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range")
    deadline = time.monotonic() + timeout
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    request = f"GET /{ACTIVITY_PATH} HTTP/1.0\r\nHost: {host}:{port}\r\nAccept: application/json\r\n\r\n"
    received = bytearray()
    with socket.create_connection((str(ip), port), timeout=timeout) as connection:
        connection.sendall(request.encode("ascii"))
        while len(received) <= MAX_ANSWER_BYTES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no whole answer within {timeout:g}s")
            connection.settimeout(remaining)
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
        else:
            raise ValueError(f"the answer is longer than {MAX_ANSWER_BYTES:,} bytes")
    return parse_activity(json.loads(_body_of(bytes(received))))


def _body_of(answer: bytes) -> bytes:
    """The body of a 200 answer read to the end of the connection; ValueError for any other (a 3xx too)."""
    head, separator, body = answer.partition(b"\r\n\r\n")
    if not separator:
        raise ValueError("the answer ended before its headers did")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    if not version.startswith("HTTP/1.") or rest.partition(" ")[0] != "200":
        raise ValueError(f"answered {status_line[:60]!r}, not 200")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    if headers.get("transfer-encoding", "identity").lower() != "identity":
        raise ValueError("the answer is chunked, which an HTTP/1.0 request does not ask for")
    length = headers.get("content-length")
    if length is not None:
        if not (length.isascii() and length.isdigit()) or int(length) > len(body):
            raise ValueError(f"the answer declares Content-Length {length[:20]!r} for {len(body)} bytes")
        body = body[:int(length)]
    return body


def read_activity(endpoints: Iterable[tuple[str, int]], timeout: float = 2.0) -> Activity:
    """Ask every replica, each at its (IP address, port), for its activity; no replica at all is unknown."""
    newest: datetime | None = None
    asked = 0
    for address, port in endpoints:
        asked += 1
        try:
            last = ask_activity(address, port, timeout)
        except (OSError, ValueError):
            return Activity(newest, False)
        if last is not None and (newest is None or last > newest):
            newest = last
    return Activity(newest, asked > 0)
