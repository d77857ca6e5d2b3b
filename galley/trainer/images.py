"""Decoding the data set's images once, skipping and counting the ones that cannot be read.

Images are decoded and resized in a thread pool (Pillow releases the GIL) and, when they fit in
memory, kept as uint8 tensors: on a CPU, decoding JPEGs every epoch costs more than training the
head, so the cache is what makes small sets fast.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from galley import storage
from galley.model.preprocessing import ImageError, Preprocessing, decode_image
from galley.trainer import transforms
from galley.trainer.data import Sample

log = logging.getLogger(__name__)


@dataclass
class DecodedSet:
    """The readable images of a split: uint8 tensors (or None when not cached) and class indices."""

    samples: list[Sample]
    targets: list[int]
    images: list[torch.Tensor] | None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    def subset(self, indices: Sequence[int]) -> DecodedSet:
        """The images at ``indices`` (sharing the decoded tensors, not copying them)."""
        return DecodedSet([self.samples[i] for i in indices], [self.targets[i] for i in indices],
                          None if self.images is None else [self.images[i] for i in indices])


def load_one(sample: Sample, preprocessing: Preprocessing) -> torch.Tensor:
    """One photo decoded (JPEG drafts at the resize size, as the predictor decodes) and kept as uint8."""
    image = decode_image(storage.read_bytes(sample.source), draft_size=preprocessing.resize_size)
    return transforms.cache_transform(preprocessing)(image)


def decode(samples: Sequence[Sample], labels: list[str], preprocessing: Preprocessing, *,
           keep: bool, threads: int) -> DecodedSet:
    """Decode every sample; bad ones are skipped, named in the log, and counted."""
    index = {label: i for i, label in enumerate(labels)}

    def attempt(sample: Sample) -> torch.Tensor | str:
        try:
            return load_one(sample, preprocessing)
        except (ImageError, storage.StorageError) as error:
            return str(error)

    # Each read runs in a copy of the caller's context, so storage credentials given for this call
    # (``storage.using_credentials``: a console reading with a Secret) reach the pool's threads.
    context = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        results = list(pool.map(lambda sample: context.copy().run(attempt, sample), samples))
    kept: list[Sample] = []
    images: list[torch.Tensor] = []
    skipped: list[tuple[str, str]] = []
    for sample, result in zip(samples, results, strict=True):
        if isinstance(result, str):
            skipped.append((sample.source, result))
            log.warning("skipping unreadable image %s: %s", sample.source, result)
            continue
        kept.append(sample)
        if keep:
            images.append(result)
    return DecodedSet(kept, [index[s.label] for s in kept], images if keep else None, skipped)

