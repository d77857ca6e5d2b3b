"""Finding the labelled images of a data set: one folder per class, or a ModelArts manifest.

Everything here runs before any training starts, so a set that cannot work (fewer than two
classes, a class with no training image, a manifest line without a label, a missing bucket)
fails at once with a message naming the file or class.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass

from galley import storage
from galley.api.splits import parse_split

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")


class DatasetError(ValueError):
    """A data set that cannot be trained on; the message says what to fix."""


@dataclass(frozen=True)
class Sample:
    """One labelled image."""

    source: str
    label: str
    usage: str | None = None
    """TRAIN or EVAL when the data set says; None lets the split decide."""


@dataclass(frozen=True)
class LabelledSet:
    """Training and evaluation samples, and the labels in class-index order."""

    labels: list[str]
    train: list[Sample]
    eval: list[Sample]

    def split_record(self) -> dict[str, object]:
        """What went where, for the output folder (reproducibility)."""
        return {
            "labels": self.labels,
            "train": [[s.source, s.label] for s in self.train],
            "eval": [[s.source, s.label] for s in self.eval],
        }


def _is_image(uri: str) -> bool:
    return uri.lower().endswith(IMAGE_SUFFIXES)


def from_folders(uri: str) -> list[Sample]:
    """Images under ``uri``; the last folder level above each image is its label."""
    root = uri.rstrip("/") + "/"
    files = storage.list_files(root)
    samples = []
    for file in files:
        relative = file[len(root):] if file.startswith(root) else file
        parts = relative.split("/")
        if len(parts) < 2 or not _is_image(file) or any(p.startswith(".") for p in parts):
            continue
        samples.append(Sample(source=file, label=parts[-2]))
    return samples


def from_manifest(uri: str) -> list[Sample]:
    """A ModelArts manifest: JSON lines with ``source``, optional ``usage``, ``annotation[].name``."""
    base = uri.rsplit("/", 1)[0]
    samples = []
    for number, line in enumerate(storage.read_text(uri).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{uri}, line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DatasetError(f"{where}: not valid JSON ({error.msg})") from None
        source = record.get("source") if isinstance(record, dict) else None
        if not isinstance(source, str) or not source:
            raise DatasetError(f"{where}: no 'source'")
        annotations = record.get("annotation") or []
        names = [a.get("name") for a in annotations if isinstance(a, dict) and a.get("name")]
        if not names:
            raise DatasetError(f"{where}: no label (expected annotation[].name) for {source}")
        usage = str(record.get("usage", "")).upper() or None
        if usage not in (None, "TRAIN", "EVAL"):
            usage = None
        if not (storage.is_s3(source) or source.startswith("/")):
            source = storage.join(base, source)
        samples.append(Sample(source=source, label=str(names[0]), usage=usage))
    return samples


def discover(uri: str, format: str = "auto") -> list[Sample]:
    """The samples of the data set at ``uri``."""
    if format == "manifest" or (format == "auto" and uri.endswith(".manifest")):
        samples = from_manifest(uri)
    else:
        try:
            samples = from_folders(uri)
        except storage.StorageError as error:
            raise DatasetError(f"cannot read the data set: {error}") from None
    if not samples:
        raise DatasetError(f"{uri}: no labelled images found; expected one folder per class holding "
                           f"{', '.join(IMAGE_SUFFIXES)} files, or a .manifest file")
    return samples


def split(samples: list[Sample], split_text: str, seed: int) -> LabelledSet:
    """Stratified, seeded split; samples that carry a usage keep it."""
    fractions = parse_split(split_text)
    labels = sorted({s.label for s in samples})
    if len(labels) < 2:
        raise DatasetError(f"found {len(labels)} class ({', '.join(labels)}); at least two are needed")
    by_label: dict[str, list[Sample]] = defaultdict(list)
    train: list[Sample] = []
    evaluation: list[Sample] = []
    for sample in samples:
        if sample.usage == "TRAIN":
            train.append(sample)
        elif sample.usage == "EVAL":
            evaluation.append(sample)
        else:
            by_label[sample.label].append(sample)
    rng = random.Random(seed)
    for label in labels:
        group = sorted(by_label[label], key=lambda s: s.source)
        rng.shuffle(group)
        n_eval = round(len(group) * fractions.eval) if len(group) > 1 else 0
        n_eval = min(max(n_eval, 1 if len(group) > 2 else 0), len(group) - 1) if group else 0
        evaluation.extend(group[:n_eval])
        train.extend(group[n_eval:])
    counts = {label: 0 for label in labels}
    for sample in train:
        counts[sample.label] += 1
    empty = [label for label, n in counts.items() if n == 0]
    if empty:
        raise DatasetError(f"class {empty[0]!r} has no training image; every class needs at least one")
    return LabelledSet(labels=labels, train=train, eval=evaluation)
