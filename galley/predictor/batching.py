"""Batching concurrent requests into one forward pass.

Requests that arrive while the runtime is busy are run together in the next pass (up to
``max_batch``), so a single request never waits for company and a burst costs fewer passes.
Inference runs on one worker thread, so requests never compete for the CPU's cores.
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

    def __init__(self, runtime: Runtime, max_batch: int = 16, window_seconds: float = 0.0):
        self.runtime = runtime
        self.max_batch = max_batch
        self.window = window_seconds
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")

    async def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits for ``batch`` (N rows in, N rows out)."""
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
            if self.window:
                await asyncio.sleep(self.window)
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
