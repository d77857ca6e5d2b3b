"""Running the predictor: load the package, bind the port, serve until stopped."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from dataclasses import dataclass

import uvicorn

from galley.predictor.app import create_app
from galley.predictor.limits import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_IMAGES,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_QUEUED,
)
from galley.predictor.model import GalleyModel

log = logging.getLogger(__name__)


class PortInUse(OSError):
    """The requested port is taken; the message says how to choose another."""


@dataclass
class ServeOptions:
    """How to serve a package."""

    model_uri: str
    host: str = "127.0.0.1"
    port: int = 8080
    name: str | None = None
    version: str | None = None
    runtime: str = "auto"
    threads: int | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_batch: int = 16
    batch_window_ms: float = 10.0
    max_images: int = DEFAULT_MAX_IMAGES
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    max_queued: int = DEFAULT_MAX_QUEUED
    precision: str = "auto"


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or :class:`PortInUse` naming the port and the way out."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this: without it, a keep-alive client waits ~40 ms per response for a
    # delayed ACK (Nagle holds the body back while the headers are unacknowledged).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise PortInUse(f"port {port} on {host} is already in use; choose another with --port "
                            "(or --port 0 for any free port)") from None
        raise
    sock.listen(128)
    return sock


def serve(options: ServeOptions) -> None:
    """Load the model, then serve it until interrupted."""
    sock = bind(options.host, options.port)
    model = GalleyModel(options.name, options.model_uri, runtime=options.runtime, threads=options.threads,
                        version=options.version, max_batch=options.max_batch,
                        batch_window_seconds=options.batch_window_ms / 1000, max_images=options.max_images,
                        max_queued=options.max_queued, precision=options.precision)
    model.load()
    app = create_app(model, options.max_body_bytes, options.max_in_flight)
    host, port = sock.getsockname()[:2]
    log.info("serving %s at http://%s:%d/ (test page: GET /, KServe: /v1/models/%s:predict, /v2/models/%s/infer)",
             model.name, host, port, model.name, model.name)
    # uvicorn's own limit is a backstop above ours (its 503 carries no Retry-After).
    config = uvicorn.Config(app, log_config=None, access_log=False, timeout_graceful_shutdown=5,
                            limit_concurrency=2 * options.max_in_flight + 16)
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))
