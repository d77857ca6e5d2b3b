"""Batching concurrent requests into one forward pass.

Requests that arrive while the runtime is busy are run together in the next pass (up to
``max_batch``). Callers announce images they are still decoding (:meth:`Batcher.expect`); a pass
waits for those, up to ``window_seconds``, but never waits when nothing else is on its way, so a
lone request sees no added latency and a burst costs fewer passes. Inference runs on one worker
thread, so requests never compete for the CPU's cores.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from galley.predictor.runtime import Runtime


@dataclass
class _Pending:
    batch: np.ndarray
    future: asyncio.Future[np.ndarray]


class Batcher:
    """Queues inputs, runs them in as few passes as the load allows, hands each caller its rows."""

    def __init__(self, runtime: Runtime, max_batch: int = 16, window_seconds: float = 0.01):
        self.runtime = runtime
        self.max_batch = max_batch
        self.window = window_seconds
        self._expected = 0
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")

    def expect(self, rows: int) -> None:
        """``rows`` images are being decoded and will be submitted soon (or withdrawn with a negative count)."""
        self._expected += rows

    async def run(self, batch: np.ndarray, expected: int = 0) -> np.ndarray:
        """Logits for ``batch`` (N rows in, N rows out); ``expected`` withdraws that many announced rows."""
        self._expected -= expected
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._serve())
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(batch, future))
        return await future

    async def _serve(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            group = [await self._queue.get()]
            deadline = loop.time() + self.window
            while self._expected > 0 and self._queue.qsize() < self.max_batch and loop.time() < deadline:
                await asyncio.sleep(0.001)
            rows = len(group[0].batch)
            while not self._queue.empty() and rows < self.max_batch:
                item = self._queue.get_nowait()
                group.append(item)
                rows += len(item.batch)
            inputs = group[0].batch if len(group) == 1 else np.concatenate([p.batch for p in group])
            try:
                logits = await loop.run_in_executor(self._executor, self.runtime.run, inputs)
            except Exception as error:
                for pending in group:
                    if not pending.future.done():
                        pending.future.set_exception(error)
                continue
            start = 0
            for pending in group:
                end = start + len(pending.batch)
                if not pending.future.done():
                    pending.future.set_result(logits[start:end])
                start = end
