"""A data set as a training job would see it, before any job runs: ``galley dataset inspect`` and
the console's Data page.

A problem in the data (a tiny class, corrupt files, a manifest line without a label, photos of one
object on both sides of the split) otherwise shows up only in a trainer's log. Here the data set is
listed and read with the trainer's own functions: :mod:`galley.trainer.data` finds the labelled
images, and :func:`galley.trainer.preparation.sort_photos` decodes, groups near-duplicates and
splits them. There is no second copy of those rules, so what this shows is what a job would do.

This module imports no torch at import time: a console without torch (the operator image) still
shows classes, counts, refused lines and empty classes, and says why the rest is missing.
"""

from __future__ import annotations

import io
import logging
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from galley import storage
from galley.api.resources import TrainingJob
from galley.trainer import data

log = logging.getLogger("galley.inspect")

DEFAULT_ALGORITHM = "mobilenet_v2"
"""The descriptor network by default: its ImageNet weights come with Galley's install (the demo's)."""
SAMPLES_PER_CLASS = 8
"""Sample photos shown per class."""
TINY_CLASS = 10
"""A class with fewer readable photos than this is called tiny: it trains, but its accuracy means little."""
THUMBNAIL_SIZE = 128
TEXT_GROUPS = 20
"""Near-duplicate groups printed in the text report (``-o json`` has them all)."""
WEIGHTS_LINE = re.compile(r"weights: ImageNet from (.+); new \d+-class head")
"""The trainer's log line naming where the weights came from (:func:`galley.trainer.engine.build_network`)."""


@dataclass
class ClassReport:
    """One class: how many photos it has, where the split puts them, and what training does with it."""

    name: str
    photos: int
    """Labelled photos listed, readable or not."""
    readable: int | None
    """None when the photos were not decoded here."""
    train: int | None
    eval: int | None
    samples: list[str]
    """A few of its photos (readable ones first), as full URIs."""
    notes: list[str] = field(default_factory=list)


@dataclass
class Inspection:
    """What ``galley dataset inspect`` prints and the Data page shows (``-o json`` is this, as JSON)."""

    uri: str
    format: str
    """``folders`` or ``manifest``: how the data set was read."""
    algorithm: str
    settings: dict[str, Any]
    classes: list[ClassReport] = field(default_factory=list)
    unreadable: list[list[str]] = field(default_factory=list)
    """``[source, reason]`` for each photo that cannot be decoded (training skips them)."""
    refused_lines: list[list[Any]] = field(default_factory=list)
    """``[line number, reason]`` for each manifest line refused."""
    ignored_files: list[list[str]] = field(default_factory=list)
    """``[file, reason]`` for files under a folder data set that training does not see."""
    empty_folders: list[str] = field(default_factory=list)
    """Folders holding no image: training sees no class for them."""
    decoded: bool = False
    """Whether the photos were decoded here (torch is needed)."""
    near_duplicates: list[list[str]] | None = None
    """Groups of near-duplicate photos the trainer would find; None when not searched."""
    near_duplicates_note: str = ""
    """How they were searched, or why not."""
    train: list[list[str]] | None = None
    """``[source, label]`` of the training photos; None when no split could be made."""
    eval: list[list[str]] | None = None
    straddling: list[list[str]] = field(default_factory=list)
    """Near-duplicate groups the manifest's usage puts on both sides of the split."""
    split_note: str = ""
    stops: list[str] = field(default_factory=list)
    """What would stop a training job on this data set, as its Failed condition would say."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def sources(self) -> set[str]:
        """Every photo of the data set (the only files the Data page shows thumbnails of)."""
        return {s for c in self.classes for s in c.samples} | {s for s, _ in self.unreadable} | \
            {s for s, _ in (self.train or [])} | {s for s, _ in (self.eval or [])}


class InspectError(ValueError):
    """The request itself is wrong (an unknown hyperparameter, a bad split): nothing was read."""


def job_for(uri: str, format: str = "auto", *, algorithm: str = DEFAULT_ALGORITHM, weights: str | None = None,
            split: str | None = None, hyperparameters: Mapping[str, str] | None = None,
            secret: str | None = None) -> TrainingJob:
    """The TrainingJob whose data set is inspected: the API's own validation checks the input, the
    trainer's functions read their settings from it as from a real job's, and a backend finds its
    storage credentials from its ``storage.secretRef``."""
    dataset: dict[str, Any] = {"uri": uri, "format": format}
    if split:
        dataset["split"] = split
    spec: dict[str, Any] = {"algorithm": {"name": algorithm, **({"weights": weights} if weights else {})},
                            "dataset": dataset, "output": {"uri": uri},  # never written: inspect writes nothing
                            "hyperparameters": dict(hyperparameters or {})}
    if secret:
        spec["storage"] = {"secretRef": secret}
    try:
        return TrainingJob.model_validate({"apiVersion": "galley.dev/v1alpha1", "kind": "TrainingJob",
                                           "metadata": {"name": "inspect"}, "spec": spec})
    except ValidationError as error:
        raise InspectError("; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}"
                                     for e in error.errors())) from None


def list_samples(uri: str, format: str = "auto") -> tuple[Inspection, list[data.Sample]]:
    """The data set's labelled photos as the trainer finds them, with what it refuses or ignores."""
    report = Inspection(uri=uri, format="manifest" if data.is_manifest(uri, format) else "folders",
                        algorithm="", settings={})
    samples: list[data.Sample] = []
    if report.format == "manifest":
        for number, sample in data.manifest_lines(uri):
            if isinstance(sample, data.DatasetError):
                report.refused_lines.append([number, str(sample)])
            else:
                samples.append(sample)
        if report.refused_lines:
            report.stops.append(f"{report.refused_lines[0][1]} (a job stops at the first refused line)")
    else:
        root = uri.rstrip("/") + "/"
        samples, ignored = data.sort_folder_files(root, storage.list_files(root))
        report.ignored_files = [list(pair) for pair in ignored]
        labelled = {s.label for s in samples}
        folders = {f.rsplit("/", 2)[-2] for f, why in ignored if why != "hidden" and f.startswith(root)
                   and "/" in f[len(root):]}
        if not storage.is_s3(uri) and Path(root).is_dir():  # a local folder can be empty; S3 has no folders
            folders |= {p.name for p in Path(root).rglob("*") if p.is_dir() and not any(p.iterdir())
                        and not p.name.startswith(".")}
        report.empty_folders = sorted(folders - labelled)
    if not samples:
        report.stops.append(str(data.nothing_found(uri)))
    return report, samples


def inspect(uri: str, format: str = "auto", *, algorithm: str = DEFAULT_ALGORITHM, weights: str | None = None,
            split: str | None = None, hyperparameters: Mapping[str, str] | None = None) -> Inspection:
    """Everything the Data page shows about the data set at ``uri``, read with the storage
    settings in effect (the environment, or ``storage.using_credentials``)."""
    job = job_for(uri, format, algorithm=algorithm, weights=weights, split=split, hyperparameters=hyperparameters)
    settings = job.spec.hyperparameters.resolved()
    report, samples = list_samples(uri, format)
    report.algorithm = algorithm
    report.settings = {"split": job.spec.dataset.split, "seed": settings.seed, "image_size": settings.image_size,
                       "near_duplicates": settings.near_duplicates,
                       "near_duplicate_threshold": settings.near_duplicate_threshold,
                       "max_bad_fraction": settings.max_bad_fraction}
    by_class: dict[str, list[data.Sample]] = {}
    for sample in samples:
        by_class.setdefault(sample.label, []).append(sample)
    report.classes = [ClassReport(name, len(members), None, None, None,
                                  [s.source for s in members[:SAMPLES_PER_CLASS]])
                      for name, members in sorted(by_class.items())]
    if not samples:
        report.split_note = "no photos, so no split"
        return report
    try:
        import torch  # noqa: F401
    except ImportError:
        reason = "torch is not installed here, so photos were not decoded"
        report.near_duplicates_note = f"not searched: {reason}"
        report.split_note = f"not made: {reason}; `galley dataset inspect` where torch is shows them"
        _notes(report)
        return report
    _sort(report, job, samples)
    _notes(report)
    return report


def _sort(report: Inspection, job: TrainingJob, samples: list[data.Sample]) -> None:
    """Decode, group and split with the trainer's own path, and record what it found."""
    from galley.model.hardware import choose
    from galley.trainer import distributed, engine, loop, preparation
    from galley.trainer.progress import Reporter
    from galley.trainer.weights import WeightsNotFound

    settings = job.spec.hyperparameters.resolved()
    placement = loop.Placement(choose())
    reporter = Reporter("", "")
    network = None
    not_searched: str | None = None
    if settings.near_duplicates == "group":
        try:
            network = engine.build_network(job, max(2, len(report.classes)), placement.accelerator, reporter)
        except (WeightsNotFound, preparation.TrainingError) as error:
            not_searched = f"the network's weights were not found: {error}"
    done = preparation.sort_photos(samples, settings, job.spec.dataset.split, network=network,
                                   not_searched=not_searched, placement=placement, world=distributed.World(),
                                   reporter=reporter, strict=False)
    report.decoded = True
    report.unreadable = [list(pair) for pair in done.decoded.skipped]
    report.stops.extend(done.stops)
    loaded = next((m for m in map(WEIGHTS_LINE.search, reporter.lines) if m), None)
    where = loaded.group(1) if loaded else "?"
    if settings.near_duplicates != "group":
        report.near_duplicates_note = "not searched: near_duplicates is 'ignore'"
    elif done.groups is not None and done.record is not None:
        report.near_duplicates = done.record["near_duplicate_groups"]
        report.near_duplicates_note = (f"searched with {job.spec.algorithm.name}'s ImageNet features (weights from "
                                       f"{where}) at threshold {settings.near_duplicate_threshold:g}; each group "
                                       f"stays on one side of the split")
    else:
        report.near_duplicates_note = f"not searched: {done.not_searched or 'no split was made'}"
    readable = {label: 0 for label in done.labels}
    for sample in done.decoded.samples:
        readable[sample.label] += 1
    if done.record is None:
        report.split_note = "not made: " + (done.stops[-1] if done.stops else "the split failed")
    else:
        report.train = [[s.source, s.label] for s in (done.decoded.samples[i] for i in done.train_index)]
        report.eval = [[s.source, s.label] for s in (done.decoded.samples[i] for i in done.eval_index)]
        report.straddling = done.record.get("straddling_groups") or []
        told = sum(1 for s in done.decoded.samples if s.usage)
        grouped = "group by group" if report.near_duplicates is not None else "photo by photo"
        how = ("as the manifest's usage says" if told == len(done.decoded) else
               f"by the manifest's usage where given ({told} photos), the rest {grouped}" if told else
               f"{grouped}, stratified per class ({job.spec.dataset.split}, seed {settings.seed})")
        report.split_note = f"{len(report.train)} training and {len(report.eval)} evaluation photos, {how}"
    unreadable = {source for source, _ in report.unreadable}
    for cls in report.classes:
        cls.readable = readable.get(cls.name, 0)
        if report.train is not None and report.eval is not None:
            cls.train = sum(1 for _, label in report.train if label == cls.name)
            cls.eval = sum(1 for _, label in report.eval if label == cls.name)
        members = [s.source for s in samples if s.label == cls.name]
        cls.samples = ([s for s in members if s not in unreadable] + [s for s in members if s in unreadable]
                       )[:SAMPLES_PER_CLASS]


def _notes(report: Inspection) -> None:
    """What training does with each class that is empty, tiny or left unevaluated (the rules of
    :func:`galley.trainer.data.split` and :func:`galley.trainer.preparation.sort_photos`)."""
    for cls in report.classes:
        count = cls.readable if cls.readable is not None else cls.photos
        if cls.readable == 0:
            cls.notes.append("no readable photo: a job stops (every class needs a training image)")
            continue
        if cls.train == 0:
            cls.notes.append("no training photo (the manifest puts every one in EVAL): a job stops")
        if count < TINY_CLASS:
            cls.notes.append(f"tiny: {count} photo{'s' if count != 1 else ''}; it trains, but its accuracy "
                             "rests on very few photos")
        if cls.eval == 0:
            cls.notes.append("no evaluation photo, so its accuracy is never measured (the split takes evaluation "
                             "photos from classes of 3 photos or more)" if count < 3 else
                             "no evaluation photo, so its accuracy is never measured")
    for folder in report.empty_folders:
        report.classes.append(ClassReport(folder, 0, 0 if report.decoded else None, None, None, [],
                                          ["empty folder: training sees no class for it"]))
    if 0 < len([c for c in report.classes if c.photos]) < 2:
        message = "fewer than two classes: a job stops (at least two are needed)"
        if not any("at least two are needed" in s for s in report.stops):
            report.stops.append(message)


def thumbnail(source: str, size: int = THUMBNAIL_SIZE) -> bytes:
    """A small JPEG of one photo, decoded as the trainer decodes it (a bad file raises
    :class:`galley.model.preprocessing.ImageError` saying why)."""
    from galley.model.preprocessing import decode_image

    image = decode_image(storage.read_bytes(source), draft_size=size)
    image.thumbnail((size, size))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()


def _pad(name: str, width: int) -> str:
    """``name`` padded to ``width`` terminal columns (a CJK character takes two)."""
    columns = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in name)
    return name + " " * max(1, width - columns) if columns < width else name + " "


def text(report: Inspection) -> str:
    """The report as ``galley dataset inspect`` prints it."""
    lines = [f"data set: {report.uri} ({report.format}); {sum(c.photos for c in report.classes)} photos, "
             f"{len([c for c in report.classes if c.photos])} classes"]
    lines.append("")
    lines.append(f"{'CLASS':<20} {'PHOTOS':>6} {'READABLE':>8} {'TRAIN':>6} {'EVAL':>6}  SAMPLES")

    def cell(value: int | None) -> str:
        return "-" if value is None else str(value)

    for cls in report.classes:
        names = ", ".join(s.rsplit("/", 1)[-1] for s in cls.samples[:4])
        lines.append(f"{_pad(cls.name, 20)} {cls.photos:>6} {cell(cls.readable):>8} {cell(cls.train):>6} "
                     f"{cell(cls.eval):>6}  {names}")
        lines.extend(f"{'':<20}   {note}" for note in cls.notes)
    if report.refused_lines:
        lines += ["", f"manifest lines refused ({len(report.refused_lines)}):"]
        lines += [f"  line {number}: {reason}" for number, reason in report.refused_lines]
    if report.unreadable:
        lines += ["", f"unreadable photos ({len(report.unreadable)}; training skips them):"]
        lines += [f"  {source}: {reason}" for source, reason in report.unreadable]
    if report.ignored_files:
        lines += ["", f"files training does not see ({len(report.ignored_files)}):"]
        lines += [f"  {file}: {reason}" for file, reason in report.ignored_files[:20]]
        if len(report.ignored_files) > 20:
            lines.append(f"  ... and {len(report.ignored_files) - 20} more")
    lines += ["", f"near-duplicates: {report.near_duplicates_note}"]
    if report.near_duplicates is not None:
        photos = sum(len(g) for g in report.near_duplicates)
        lines.append(f"  {len(report.near_duplicates)} groups holding {photos} photos")
        shown = report.near_duplicates[:TEXT_GROUPS]
        lines += [f"  {', '.join(s.rsplit('/', 1)[-1] for s in group)}" for group in shown]
        if len(report.near_duplicates) > TEXT_GROUPS:
            lines.append(f"  ... and {len(report.near_duplicates) - TEXT_GROUPS} more groups (-o json lists them all)")
    lines += ["", f"split: {report.split_note}"]
    if report.straddling:
        lines.append(f"  warning: the manifest's usage puts {len(report.straddling)} near-duplicate group(s) on both "
                     "sides, so evaluation accuracy is optimistic for them")
    if report.stops:
        lines += ["", "a training job on this data set would stop:"]
        lines += [f"  {stop}" for stop in report.stops]
    return "\n".join(lines)
