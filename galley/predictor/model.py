"""Galley's ``kserve.Model``: a model package served with per-class scores.

``load()`` fetches the package, picks the runtime, warms it up and only then reports ready.
``preprocess`` decodes images (KServe v1 instances or the cloud platform's uploads) off the event
loop; ``predict`` runs them through the batcher; ``postprocess`` turns logits into scores for
every class, highest first. v2 requests, decoded by :mod:`galley.predictor.v2`, go through
:meth:`GalleyModel.probabilities`. Every path counts images before decoding any.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from galley.model import package
from galley.model.preprocessing import ImageError, decode_image
from galley.predictor._kserve import InvalidInput, kserve
from galley.predictor.activity import ActivityRecord
from galley.predictor.batching import Batcher, Ticket
from galley.predictor.limits import DEFAULT_MAX_IMAGES, DEFAULT_MAX_QUEUED
from galley.predictor.runtime import Runtime, choose_runtime

log = logging.getLogger(__name__)
DECODE_SLOTS = 2
INLINE_DECODE_BYTES = 64 * 1024
"""A lone JPEG up to this size is decoded on the event loop (about 1 ms for a 256-pixel photo);
larger ones, other formats (a small PNG can hold many pixels) and several images at once go to
the decoding threads, so that the loop stays responsive."""
JPEG_MAGIC = b"\xff\xd8"
"""Images decoded at the same time: with the per-image pixel cap, this bounds decoding's memory."""

Protocol = Literal["v1", "v2", "modelarts"]
EXPECTED_V1 = ('expected {"instances": [...]} where each instance is {"image_bytes": {"b64": "<base64 image>"}}, '
               '{"image": {"b64": ...}}, {"b64": ...}, {"data": "<base64>"} or a base64 string')


@dataclass
class ImageBatch:
    """Decoded, normalised images and the protocol they came in with."""

    protocol: Protocol
    tensors: np.ndarray
    ticket: Ticket | None = None


@dataclass
class Uploads:
    """Raw image files from the cloud platform's ``POST /`` (multipart or base64 JSON)."""

    files: list[tuple[str, bytes]]


def _instance_image(instance: Any, where: str) -> bytes:
    """The image bytes of one v1 instance, in any of the shapes KServe's and TF Serving's examples use."""
    value = instance
    if isinstance(value, dict):
        for key in ("image_bytes", "image", "b64", "data", "bytes"):
            if key in value:
                value = value[key]
                break
        else:
            raise InvalidInput(f"{where} has the keys {', '.join(map(repr, instance))}; {EXPECTED_V1}")
        if isinstance(value, dict):
            value = value.get("b64")
    if not isinstance(value, str):
        raise InvalidInput(f"{where} is {type(instance).__name__}, not an image; {EXPECTED_V1}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{where}: not valid base64; {EXPECTED_V1}") from None


class GalleyModel(kserve.Model):
    """A Galley model package behind KServe's protocols."""

    def __init__(self, name: str | None, uri: str, *, runtime: str = "auto", threads: int | None = None,
                 version: str | None = None, max_batch: int = 16, batch_window_seconds: float = 0.01,
                 max_images: int = DEFAULT_MAX_IMAGES, max_queued: int = DEFAULT_MAX_QUEUED, precision: str = "auto"):
        super().__init__(name or "model")
        self.uri = uri
        self.prefer_runtime = runtime
        self.threads = threads
        self.requested_name = name
        self.requested_version = version
        self.max_batch = max_batch
        self.batch_window = batch_window_seconds
        self.max_images = max_images
        self.max_queued = max_queued
        self.precision = precision
        self._decode_slots = threading.BoundedSemaphore(DECODE_SLOTS)
        self.config: package.PackageConfig | None = None
        self.folder: Path | None = None
        self.runtime: Runtime | None = None
        self.batcher: Batcher | None = None
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self.activity = ActivityRecord()

    # -- load ------------------------------------------------------------------------------------

    def load(self) -> bool:
        started = time.monotonic()
        self._scratch = tempfile.TemporaryDirectory(prefix="galley-model-")
        self.config, self.folder = package.fetch(self.uri, Path(self._scratch.name))
        if self.requested_name is None:
            self.name = self.config.name
        self.runtime = choose_runtime(self.folder, self.config, self.prefer_runtime, self.threads, self.precision)
        self.preprocessing = package.preprocessing_of(self.config)
        self.runtime.run(np.zeros((1, 3, self.config.image_size, self.config.image_size), dtype=np.float32))
        self.batcher = Batcher(self.runtime, self.max_batch, self.batch_window, self.max_queued)
        self.ready = True
        log.info("model %s (%s, %d classes) ready in %.1fs: runtime %s, %d thread(s)", self.name,
                 self.config.algorithm, len(self.config.labels), time.monotonic() - started,
                 self.runtime.name, self.runtime.threads)
        return True

    def get_input_types(self) -> list[dict[str, Any]]:
        return [{"name": "images", "datatype": "BYTES", "shape": [-1]}]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [{"name": "probabilities", "datatype": "FP32", "shape": [-1, len(self.labels)]},
                {"name": "predicted_label", "datatype": "BYTES", "shape": [-1]}]

    @property
    def labels(self) -> list[str]:
        assert self.config is not None
        return self.config.labels

    @property
    def version(self) -> str:
        assert self.config is not None
        return self.requested_version or self.config.version

    def report_path(self) -> Path | None:
        """The package's report, for the unauthenticated ``GET /report``: only ever a file inside
        the package. ``load`` refused a package naming any other; this asks again as it serves,
        since a local package folder is used in place and may have changed since."""
        if self.folder is None or self.config is None or not self.config.report:
            return None
        try:
            path = package.package_file(self.folder, self.config.report, "report")
        except package.PackageInvalid as refused:
            log.warning("not serving the report: %s", refused)
            return None
        try:
            return path if path.is_file() else None
        except OSError:  # a name the file system refuses, a permission: no report, not a 500
            return None

    # -- preprocess ------------------------------------------------------------------------------

    def _decode(self, data: bytes, where: str) -> np.ndarray:
        try:
            image = decode_image(data, draft_size=self.preprocessing.resize_size)
        except ImageError as error:
            raise InvalidInput(f"{where}: {error}") from None
        return self.preprocessing.eval_input(image)

    def _tensor(self, data: bytes, where: str) -> np.ndarray:
        with self._decode_slots:  # bounds the pixels being decoded at once, whatever the load
            return self._decode(data, where)

    async def _decode_all(self, protocol: Protocol, items: list[tuple[str, bytes]]) -> ImageBatch:
        assert self.batcher is not None
        if len(items) == 1 and len(items[0][1]) <= INLINE_DECODE_BYTES and items[0][1][:2] == JPEG_MAGIC:
            # One small JPEG decodes in about a millisecond (draft mode bounds its pixels whatever its
            # dimensions): handing it to a thread and back would cost half as much again. Nothing
            # else is on its way, so no ticket is needed.
            where, data = items[0]
            return ImageBatch(protocol, self._decode(data, where)[np.newaxis], None)
        ticket = self.batcher.expect(len(items))
        try:
            arrays = await asyncio.gather(*(asyncio.to_thread(self._tensor, data, where) for where, data in items))
        except BaseException:
            self.batcher.withdraw(ticket)
            raise
        return ImageBatch(protocol, np.stack(arrays), ticket)

    def check_count(self, count: int, where: str) -> None:
        """Refuse a request with more images than allowed, before any is decoded."""
        if count > self.max_images:
            raise InvalidInput(f"{where} holds {count} images; at most {self.max_images} are accepted per request")

    async def probabilities(self, items: list[tuple[str, bytes]]) -> np.ndarray:
        """Class probabilities of each image, in order (the v2 route's path through the model; its
        decoder has counted the images against ``max_images`` already)."""
        _, probabilities = await self.predict(await self._decode_all("v2", items))
        return probabilities

    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> ImageBatch:
        if isinstance(payload, Uploads):
            self.check_count(len(payload.files), "the upload")
            return await self._decode_all("modelarts", payload.files)
        if isinstance(payload, dict):
            instances = payload.get("instances")
            if not isinstance(instances, list) or not instances:
                raise InvalidInput(f"no instances; {EXPECTED_V1}")
            self.check_count(len(instances), "instances")
            items = [(f"instances[{i}]", _instance_image(instance, f"instances[{i}]"))
                     for i, instance in enumerate(instances)]
            return await self._decode_all("v1", items)
        raise InvalidInput(f"unsupported request body; {EXPECTED_V1}")

    # -- predict and postprocess -----------------------------------------------------------------

    async def predict(self, payload: ImageBatch, headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> tuple[ImageBatch, np.ndarray]:
        assert self.batcher is not None
        logits = await self.batcher.run(payload.tensors, payload.ticket)
        self.activity.served(len(logits))
        shifted = logits - logits.max(axis=1, keepdims=True)
        probabilities = np.exp(shifted)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        return payload, probabilities

    def scores(self, probabilities: np.ndarray) -> list[dict[str, Any]]:
        """One ``{"predicted_label", "scores"}`` answer per image, every class, highest first."""
        answers = []
        for row in probabilities:
            ranked = sorted(zip(self.labels, row.tolist(), strict=True), key=lambda pair: -pair[1])
            answers.append({"predicted_label": ranked[0][0],
                            "scores": [[label, round(score, 6)] for label, score in ranked]})
        return answers

    async def postprocess(self, result: tuple[ImageBatch, np.ndarray], headers: dict[str, str] | None = None,
                          response_headers: dict[str, str] | None = None) -> Any:
        batch, probabilities = result
        answers = self.scores(probabilities)
        if batch.protocol == "v1":
            return {"predictions": answers}
        return answers
