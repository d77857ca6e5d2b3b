"""Finding the labelled images of a data set: one folder per class, or a ModelArts manifest.

Everything here runs before any training starts, so a set that cannot work (fewer than two
classes, a class with no training image, a manifest line without a label, a missing bucket)
fails at once with a message naming the file or class.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

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
    near_duplicates: list[list[str]] = field(default_factory=list)
    """Groups of near-duplicate photos (sources), each kept on one side of the split."""
    straddling: list[list[str]] = field(default_factory=list)
    """Groups that the data set's own usage puts on both sides (a warning, not an error)."""

    def split_record(self) -> dict[str, Any]:
        """What went where, for the output folder (reproducibility)."""
        return {
            "labels": self.labels,
            "train": [[s.source, s.label] for s in self.train],
            "eval": [[s.source, s.label] for s in self.eval],
            "near_duplicate_groups": self.near_duplicates,
            "straddling_groups": self.straddling,
        }


def _is_image(uri: str) -> bool:
    return uri.lower().endswith(IMAGE_SUFFIXES)


def sort_folder_files(root: str, files: list[str]) -> tuple[list[Sample], list[tuple[str, str]]]:
    """The labelled images among ``files`` listed under ``root``, and the files left out with why
    (``galley dataset inspect`` shows those; training simply does not see them)."""
    samples = []
    ignored = []
    for file in files:
        relative = file[len(root):] if file.startswith(root) else file
        parts = relative.split("/")
        if any(p.startswith(".") for p in parts):
            ignored.append((file, "hidden"))
        elif len(parts) < 2:
            ignored.append((file, "not in a class folder"))
        elif not _is_image(file):
            ignored.append((file, f"not an image name ({', '.join(IMAGE_SUFFIXES)})"))
        else:
            samples.append(Sample(source=file, label=parts[-2]))
    return samples, ignored


def from_folders(uri: str) -> list[Sample]:
    """Images under ``uri``; the last folder level above each image is its label."""
    root = uri.rstrip("/") + "/"
    return sort_folder_files(root, storage.list_files(root))[0]


def manifest_lines(uri: str) -> list[tuple[int, Sample | DatasetError]]:
    """Each non-blank line of a ModelArts manifest (JSON lines with ``source``, optional ``usage``,
    ``annotation[].name``) with its number: the sample it gives, or why it is refused."""
    base = uri.rsplit("/", 1)[0]
    lines: list[tuple[int, Sample | DatasetError]] = []
    for number, line in enumerate(storage.read_text(uri).splitlines(), start=1):
        if line.strip():
            try:
                lines.append((number, _manifest_sample(line, f"{uri}, line {number}", base)))
            except DatasetError as error:
                lines.append((number, error))
    return lines


def _manifest_sample(line: str, where: str, base: str) -> Sample:
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
    return Sample(source=source, label=str(names[0]), usage=usage)


def from_manifest(uri: str) -> list[Sample]:
    """A ModelArts manifest's samples; the first refused line stops the data set (a line without a
    label must not silently shrink a class)."""
    samples = []
    for _, sample in manifest_lines(uri):
        if isinstance(sample, DatasetError):
            raise sample
        samples.append(sample)
    return samples


def is_manifest(uri: str, format: str = "auto") -> bool:
    """Whether ``uri`` is read as a manifest (``auto``: when it ends in .manifest)."""
    return format == "manifest" or (format == "auto" and uri.endswith(".manifest"))


def discover(uri: str, format: str = "auto") -> list[Sample]:
    """The samples of the data set at ``uri``."""
    # A StorageError goes up as it is: whether to retry depends on which.
    samples = from_manifest(uri) if is_manifest(uri, format) else from_folders(uri)
    if not samples:
        raise nothing_found(uri)
    return samples


def nothing_found(uri: str) -> DatasetError:
    return DatasetError(f"{uri}: no labelled images found; expected one folder per class holding "
                        f"{', '.join(IMAGE_SUFFIXES)} files, or a .manifest file")


def _usage_of_group(members: list[Sample]) -> str | None:
    """The side a group goes to: the usage most of its members carry, or None to let the split decide."""
    told = [s.usage for s in members if s.usage]
    if not told:
        return None
    return max(("TRAIN", "EVAL"), key=told.count)


def _choose_eval_groups(groups: list[list[Sample]], fraction: float, rng: random.Random) -> set[int]:
    """Indices of whole groups for evaluation: about ``fraction`` of the photos, at least one group
    when there are three photos or more, never every group."""
    total = sum(len(g) for g in groups)
    target = round(total * fraction) if total > 1 else 0
    target = max(target, 1 if total > 2 else 0)
    order = list(range(len(groups)))
    rng.shuffle(order)
    chosen: set[int] = set()
    taken = 0
    for index in order:
        if len(chosen) == len(groups) - 1 or taken >= target:
            break
        size = len(groups[index])
        if taken and abs(taken + size - target) > abs(taken - target):
            continue  # this group would overshoot more than stopping short
        chosen.add(index)
        taken += size
    return chosen


def split(samples: list[Sample], split_text: str, seed: int, groups: list[int] | None = None) -> LabelledSet:
    """Stratified, seeded split that keeps each group of near-duplicates on one side.

    ``groups`` gives a group per sample (see :mod:`galley.trainer.grouping`); None puts each sample
    in its own group. Samples that carry a usage keep it, and the rest of their group follows them.
    """
    fractions = parse_split(split_text)
    labels = sorted({s.label for s in samples})
    if len(labels) < 2:
        raise DatasetError(f"found {len(labels)} class ({', '.join(labels)}); at least two are needed")
    group_of = groups if groups is not None else list(range(len(samples)))
    if len(group_of) != len(samples):
        raise ValueError(f"{len(group_of)} group indices for {len(samples)} samples")
    by_group: dict[int, list[Sample]] = defaultdict(list)
    for sample, group in zip(samples, group_of, strict=True):
        by_group[group].append(sample)
    near_duplicates = [sorted(s.source for s in members) for members in by_group.values() if len(members) > 1]
    straddling = [sorted(s.source for s in members) for members in by_group.values()
                  if {"TRAIN", "EVAL"} <= {s.usage for s in members}]
    train: list[Sample] = []
    evaluation: list[Sample] = []
    free: dict[str, list[list[Sample]]] = defaultdict(list)
    for members in by_group.values():
        usage = _usage_of_group(members)
        if usage is None:
            free[members[0].label].append(sorted(members, key=lambda s: s.source))
            continue
        for sample in members:  # told samples keep their usage; untold ones follow the group
            (evaluation if (sample.usage or usage) == "EVAL" else train).append(sample)
    rng = random.Random(seed)
    for label in labels:
        candidates = sorted(free[label], key=lambda g: g[0].source)
        chosen = _choose_eval_groups(candidates, fractions.eval, rng)
        for index, members in enumerate(candidates):
            (evaluation if index in chosen else train).extend(members)
    counts = {label: 0 for label in labels}
    for sample in train:
        counts[sample.label] += 1
    empty = [label for label, n in counts.items() if n == 0]
    if empty:
        raise DatasetError(f"class {empty[0]!r} has no training image; every class needs at least one")
    return LabelledSet(labels=labels, train=train, eval=evaluation,
                       near_duplicates=sorted(near_duplicates), straddling=sorted(straddling))
