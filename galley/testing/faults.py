"""A fault-injecting reverse proxy, for tests: kube-apiserver or S3 that fail the way real ones do.

It forwards every request to its upstream (streaming, so watches work) except a chosen share,
which it answers with a 500, a 429 with ``Retry-After``, or a dropped connection; ``down``
drops everything (a store that is unreachable for a while). It counts what it injected, so a
test can report the faults its system survived. Runs on its own event loop in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade",
              "proxy-connection", "te", "trailer", "content-encoding"}
FAULTS = ("500", "429", "drop")


@dataclass
class FaultyProxy:
    """``http(s)://127.0.0.1:<port>`` in front of ``upstream``."""

    upstream: str
    share: float = 0.0
    """The share of requests answered with a fault instead of being forwarded."""
    down: bool = False
    """Drop every connection (the upstream looks unreachable)."""
    server_ssl: ssl.SSLContext | None = None
    client_ssl: ssl.SSLContext | None = None
    seed: int = 0
    injected: Counter[str] = field(default_factory=Counter)
    forwarded: int = 0
    url: str = ""
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None

    def start(self) -> str:
        logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # dropped connections are the point
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="faulty-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(timeout=30):
            raise RuntimeError("the fault proxy did not start")
        return self.url

    def stop(self) -> None:
        if self._loop is not None and self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._open())
        ready.set()
        self._loop.run_forever()

    async def _open(self) -> None:
        rng = random.Random(self.seed)
        session = ClientSession(connector=TCPConnector(ssl=self.client_ssl or False, limit=0),
                                timeout=ClientTimeout(total=None, sock_connect=10), auto_decompress=False)

        async def handle(request: web.Request) -> web.StreamResponse:
            fault = "drop" if self.down else (rng.choice(FAULTS) if rng.random() < self.share else None)
            if fault is not None:
                self.injected[fault] += 1
                if fault == "drop":
                    if request.transport is not None:
                        request.transport.abort()
                    return web.Response(status=503)  # never sent: the connection is gone
                headers = {"Retry-After": "1"} if fault == "429" else {}
                return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                          "message": f"injected {fault}", "code": int(fault)},
                                         status=int(fault), headers=headers)
            self.forwarded += 1
            headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
            body = await request.read()
            async with session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                       data=body or None) as upstream:
                answer = web.StreamResponse(status=upstream.status, headers={
                    k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP})
                await answer.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await answer.write(chunk)
                await answer.write_eof()
                return answer

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", handle)
        app.on_cleanup.append(lambda _: session.close())
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.server_ssl)
        await site.start()
        server: Any = site._server
        port = server.sockets[0].getsockname()[1]
        self.url = f"{'https' if self.server_ssl else 'http'}://127.0.0.1:{port}"

    def summary(self) -> str:
        kinds = ", ".join(f"{count} x {kind}" for kind, count in sorted(self.injected.items()))
        return f"{sum(self.injected.values())} faults injected ({kinds}), {self.forwarded} requests forwarded"
