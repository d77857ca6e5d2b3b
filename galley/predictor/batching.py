"""Batching concurrent requests into one forward pass.

Requests that arrive while the runtime is busy are run together in the next pass (up to
``max_batch``). Callers announce images they are still decoding (:meth:`Batcher.expect`); a pass
waits for those, up to ``window_seconds``, but never waits when nothing else is on its way, so a
lone request sees no added latency and a burst costs fewer passes. An announcement lapses on its
own after a while, so a request that fails or is cancelled between decoding and inference cannot
leave every later pass waiting. The queue is bounded: past ``max_queued`` images, :class:`Overloaded`.

Where passes run: a request of one image that finds nothing queued, announced, running or
arriving runs its pass on the event loop's own thread, as KServe runs a synchronous ``predict``.
The hop to a worker thread and back would cost a few tenths of a millisecond, several percent of
an INT8 ResNet50 pass. Before it does, the loop goes round once, so requests the server has
already read get to say so; if any did, they all batch instead. Requests that come in during
such a pass wait in their sockets and share the next one. Every other pass runs on one inference
thread, and never while a pass runs on the loop (which is then blocked), so passes never compete
for the CPU's cores.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from prometheus_client import Counter

from galley.predictor.runtime import Runtime

PASSES_COUNTER = Counter("galley_inference_passes", "Forward passes run; galley_predictions_total over this is "
                         "the mean batch size")


class Overloaded(Exception):
    """More images are queued than the predictor will hold; the caller should retry shortly."""


@dataclass
class Ticket:
    """Images announced as on their way; they count until submitted, withdrawn, or ``expires``."""

    rows: int
    expires: float
    open: bool = True


@dataclass
class _Pending:
    batch: np.ndarray
    future: asyncio.Future[np.ndarray]


class Batcher:
    """Queues inputs, runs them in as few passes as the load allows, hands each caller its rows."""

    def __init__(self, runtime: Runtime, max_batch: int = 16, window_seconds: float = 0.01,
                 max_queued: int = 64, inline_lone_images: bool = True):
        self.runtime = runtime
        self.max_batch = max_batch
        self.window = window_seconds
        self.max_queued = max_queued
        self._tickets: list[Ticket] = []
        self._queued_rows = 0
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._busy = False
        """A pass is on the inference thread."""
        self._idle = asyncio.Event()
        self.inline_lone_images = inline_lone_images
        self._arriving = 0
        """Requests between :meth:`run`'s first check and its decision."""

    def _alone(self) -> bool:
        """Nothing is running, queued, announced, or on its way to this point."""
        return not self._busy and self._queued_rows == 0 and self._arriving == 0 and self.expected() == 0

    def expect(self, rows: int, lapse_seconds: float = 1.0) -> Ticket:
        """``rows`` images are being decoded and will be submitted soon; close the ticket with :meth:`withdraw`."""
        ticket = Ticket(rows, time.monotonic() + lapse_seconds)
        self._tickets.append(ticket)
        return ticket

    def withdraw(self, ticket: Ticket | None) -> None:
        if ticket is not None:
            ticket.open = False

    def expected(self) -> int:
        """Announced rows still on their way (closed and lapsed tickets dropped)."""
        now = time.monotonic()
        self._tickets = [t for t in self._tickets if t.open and t.expires > now]
        return sum(t.rows for t in self._tickets)

    async def run(self, batch: np.ndarray, ticket: Ticket | None = None) -> np.ndarray:
        """Logits for ``batch`` (N rows in, N rows out); submitting closes ``ticket``."""
        self.withdraw(ticket)
        if self._queued_rows + len(batch) > self.max_queued:
            raise Overloaded(f"{self._queued_rows} images are already waiting (at most {self.max_queued})")
        if self.inline_lone_images and len(batch) == 1 and self._alone():
            self._arriving += 1
            try:
                await asyncio.sleep(0)  # one turn of the loop: requests already read reach this point too
            finally:
                self._arriving -= 1
            if self._alone():
                return self._forward(batch)
        loop = asyncio.get_running_loop()
        if self._alone():
            # Nothing to batch with: straight to the inference thread, without the worker's hop.
            self._busy = True
            try:
                return await loop.run_in_executor(self._executor, self._forward, batch)
            finally:
                self._busy = False
                self._idle.set()
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._serve())
        future: asyncio.Future[np.ndarray] = loop.create_future()
        self._queued_rows += len(batch)
        await self._queue.put(_Pending(batch, future))
        return await future

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        logits = self.runtime.run(batch)
        PASSES_COUNTER.inc()
        return logits

    async def _serve(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            group = [await self._queue.get()]
            while self._busy:  # a lone request is on the inference thread; what comes meanwhile batches
                self._idle.clear()
                await self._idle.wait()
            deadline = loop.time() + self.window
            while self.expected() > 0 and self._queue.qsize() < self.max_batch and loop.time() < deadline:
                await asyncio.sleep(0.001)
            rows = len(group[0].batch)
            while not self._queue.empty() and rows < self.max_batch:
                item = self._queue.get_nowait()
                group.append(item)
                rows += len(item.batch)
            inputs = group[0].batch if len(group) == 1 else np.concatenate([p.batch for p in group])
            self._queued_rows -= rows
            self._busy = True
            try:
                logits = await loop.run_in_executor(self._executor, self._forward, inputs)
            except Exception as error:
                for pending in group:
                    if not pending.future.done():
                        pending.future.set_exception(error)
                continue
            finally:
                self._busy = False
                self._idle.set()
            start = 0
            for pending in group:
                end = start + len(pending.batch)
                if not pending.future.done():
                    pending.future.set_result(logits[start:end])
                start = end
