"""No request can sink the predictor: bounded queue, bounded requests in flight, and announcements
of images on their way that cannot leak."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from galley.predictor.batching import Batcher, Overloaded
from galley.testing.processes import predictor


class SlowRuntime:
    """A stand-in for the network in these queueing tests only: it takes a fixed time per pass."""

    name = "slow"
    threads = 1

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.passes = 0

    def run(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(self.seconds)
        self.passes += 1
        return np.zeros((len(batch), 4), dtype=np.float32)


def test_a_full_queue_refuses_more_images_and_then_recovers() -> None:
    async def scenario() -> tuple[int, int]:
        batcher = Batcher(SlowRuntime(0.2), max_batch=4, window_seconds=0.0, max_queued=8)
        one = np.zeros((4, 3, 8, 8), dtype=np.float32)
        waiting = [asyncio.ensure_future(batcher.run(one))]
        await asyncio.sleep(0.05)  # the first batch is running
        waiting += [asyncio.ensure_future(batcher.run(one)) for _ in range(2)]
        await asyncio.sleep(0)  # two more (8 images) are queued
        refused = 0
        try:
            await batcher.run(one)
        except Overloaded:
            refused += 1
        done = await asyncio.gather(*waiting)
        again = await batcher.run(one)  # the queue drained: accepted again
        return refused, len(done) + (len(again) == 4)

    assert asyncio.run(scenario()) == (1, 4)


def test_requests_arriving_while_a_lone_one_runs_share_the_next_pass() -> None:
    async def scenario() -> tuple[int, list[int]]:
        runtime = SlowRuntime(0.2)
        batcher = Batcher(runtime, max_batch=16, window_seconds=0.0)
        one = np.zeros((1, 3, 8, 8), dtype=np.float32)
        first = asyncio.ensure_future(batcher.run(one))  # nothing else about: straight to the runtime
        await asyncio.sleep(0.05)
        later = [asyncio.ensure_future(batcher.run(one)) for _ in range(3)]
        answers = await asyncio.gather(first, *later)
        return runtime.passes, [len(a) for a in answers]

    assert asyncio.run(scenario()) == (2, [1, 1, 1, 1])  # one pass alone, then the three together


def test_an_announcement_that_is_never_submitted_lapses() -> None:
    async def scenario() -> float:
        runtime = SlowRuntime(0.0)
        batcher = Batcher(runtime, max_batch=16, window_seconds=0.5)
        batcher.expect(3, lapse_seconds=0.05)  # a request that failed after decoding, never withdrawn
        await asyncio.sleep(0.1)
        start = time.monotonic()
        await batcher.run(np.zeros((1, 3, 8, 8), dtype=np.float32))
        return time.monotonic() - start

    assert asyncio.run(scenario()) < 0.25  # it did not wait the 0.5 s window for the lapsed images
    assert Batcher(SlowRuntime(0.0)).expected() == 0


@pytest.mark.slow
def test_a_burst_beyond_the_limits_gets_503_with_retry_after_and_nothing_else_fails(
        trained_package: Path, food_photos: Any) -> None:
    photo = food_photos.holdout[0][0].read_bytes()
    with predictor(str(trained_package), "--max-in-flight", "4", "--max-queued", "4", "--max-batch", "2") as url:
        def post(_: int) -> httpx.Response:
            with httpx.Client(base_url=url, timeout=120) as client:
                return client.post("/", files=[("images", ("p.jpg", photo, "image/jpeg"))] * 2)

        with ThreadPoolExecutor(max_workers=24) as pool:
            responses = list(pool.map(post, range(48)))
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {200, 503}, statuses
        assert statuses.count(200) >= 4 and statuses.count(503) >= 1, statuses
        assert all(r.headers.get("retry-after") == "1" for r in responses if r.status_code == 503)
        with httpx.Client(base_url=url, timeout=60) as client:
            assert client.post("/", files={"images": ("p.jpg", photo, "image/jpeg")}).status_code == 200


def _metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


@pytest.mark.slow
def test_single_photos_sent_at_once_share_passes_though_a_lone_one_runs_alone(
        trained_package: Path, food_photos: Any) -> None:
    """A lone photo runs its pass on the event loop; the test checks that this does not serialise a
    burst: photos sent at the same time share passes."""
    photos = [path.read_bytes() for path, _ in food_photos.holdout[:8]]
    with predictor(str(trained_package), "--threads", "1") as url, httpx.Client(base_url=url, timeout=120) as client:
        alone = client.post("/", files={"images": ("p.jpg", photos[0], "image/jpeg")})
        assert alone.status_code == 200
        metrics = client.get("/metrics").text
        assert _metric(metrics, "galley_inference_passes_total") == 1
        assert _metric(metrics, "galley_predictions_total") == 1

        def post(k: int) -> int:
            with httpx.Client(base_url=url, timeout=120) as own:
                return sum(own.post("/", files={"images": ("p.jpg", photos[(k + i) % len(photos)], "image/jpeg")})
                           .status_code == 200 for i in range(4))

        with ThreadPoolExecutor(max_workers=12) as pool:
            answered = sum(pool.map(post, range(12)))
        metrics = client.get("/metrics").text
        images, passes = _metric(metrics, "galley_predictions_total"), _metric(metrics, "galley_inference_passes_total")
    assert answered == 48 and images == 49
    assert passes < 0.8 * images, f"{passes:.0f} passes for {images:.0f} photos: the burst was not batched"
