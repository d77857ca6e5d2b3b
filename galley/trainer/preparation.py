"""Getting a job's data ready: its photos found, decoded once, grouped into near-duplicates and
split, and the warm-up's features computed, each only when needed (a resumed job keeps its
recorded split, and a job past its warm-up needs no features)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from galley import storage
from galley.api.hyperparameters import Resolved
from galley.api.resources import TrainingJob
from galley.control import reasons
from galley.model.hardware import Accelerator
from galley.model.preprocessing import Preprocessing
from galley.trainer import data, distributed, grouping, images, loop, transforms
from galley.trainer.progress import Reporter

CACHE_BUDGET_BYTES = 3 * 1024**3
"""``cache_images: auto`` keeps decoded images in memory up to this size."""
SPLIT_FILE = "split.json"


class TrainingError(RuntimeError):
    """The job cannot go on; the message says why and what to do, ``reason`` names it for the
    TrainingJob's Failed condition, and ``permanent`` says whether another attempt would fail the same way."""

    def __init__(self, message: str, reason: str = reasons.TRAINER_ERROR, *, permanent: bool = True) -> None:
        super().__init__(message)
        self.reason = reason
        self.permanent = permanent


@dataclass
class Prepared:
    """The data of a run, decoded and split."""

    labels: list[str]
    train: images.DecodedSet
    eval: images.DecodedSet
    features: tuple[torch.Tensor, torch.Tensor] | None
    """Pooled features of the training and evaluation photos, for the warm-up (None when not needed)."""
    summary: dict[str, Any]
    """Counts for config.json and the report."""


def discover(job: TrainingJob) -> list[data.Sample]:
    try:
        return data.discover(job.spec.dataset.uri, job.spec.dataset.format)
    except storage.StorageError as error:
        if isinstance(error, storage.StorageUnavailable):  # the store did not answer: another attempt may
            raise TrainingError(f"cannot read the data set: {error}", reasons.STORAGE_UNAVAILABLE,
                                permanent=False) from None
        raise TrainingError(f"cannot read the data set: {error}", reasons.DATASET_INVALID) from None
    except data.DatasetError as error:
        raise TrainingError(str(error), reasons.DATASET_INVALID) from None


def decode_all(samples: list[data.Sample], labels: list[str], settings: Resolved, preprocessing: Preprocessing,
               accelerator: Accelerator, reporter: Reporter) -> tuple[images.DecodedSet, str | None]:
    """Every readable photo, decoded once; unreadable ones skipped, named and counted. With them, why
    a job stops when more than ``max_bad_fraction`` cannot be read (None when not)."""
    size = preprocessing.resize_size
    needed = len(samples) * 3 * size * size
    choice = settings.cache_images
    keep = choice == "true" or (choice == "auto" and needed <= CACHE_BUDGET_BYTES)
    why = "asked" if choice != "auto" else f"{needed / 2**20:.0f} MiB {'fits' if keep else 'exceeds'} the budget"
    reporter.say("image cache: %s (%s)", "in memory" if keep else "off, decoding every epoch", why)
    started = time.monotonic()
    decoded = images.decode(samples, labels, preprocessing, keep=keep, threads=max(2, accelerator.threads * 2))
    skipped = decoded.skipped
    reporter.say("decoded %d images in %.1fs; skipped %d unreadable", len(decoded), time.monotonic() - started,
                 len(skipped))
    for source, reason in skipped:
        reporter.say("skipped %s: %s", source, reason)
    share = len(skipped) / max(1, len(samples))
    if share > settings.max_bad_fraction:
        return decoded, (f"{len(skipped)} of {len(samples)} images ({share:.0%}) cannot be read, more than "
                         f"max_bad_fraction {settings.max_bad_fraction:g}; first: {skipped[0][0]}")
    return decoded, None


UNTRAINED = "an untrained network's features cannot tell them apart"
"""Why near-duplicates are not searched for ``pretrained: false``."""


@dataclass
class Sorted:
    """The photos as training sorts them: decoded, grouped into near-duplicates and split. The
    trainer goes on from here; ``galley dataset inspect`` shows it."""

    labels: list[str]
    decoded: images.DecodedSet
    train_index: list[int]
    """Indices into ``decoded`` of the training photos."""
    eval_index: list[int]
    record: dict[str, Any] | None
    """What went where (``split.json``); None when no split could be made."""
    features: loop.Features | None
    groups: grouping.Groups | None
    """Near-duplicate groups over ``decoded``; None when they were not searched."""
    not_searched: str | None
    """Why near-duplicates were not searched, when they were not (and ``near_duplicates`` asks for them)."""
    stops: list[str] = field(default_factory=list)
    """What would stop a training job, collected instead of raised (``strict=False``)."""


def _recorded_split(output: str) -> dict[str, Any] | None:
    """The split a resumed job chose in its first run, so that resuming never moves a photo from
    one side to the other."""
    try:
        record = json.loads(storage.read_text(storage.join(output, SPLIT_FILE)))
    except (storage.StorageError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def sort_photos(samples: list[data.Sample], settings: Resolved, split_text: str, *, network: nn.Module | None,
                not_searched: str | None, placement: loop.Placement, world: distributed.World, reporter: Reporter,
                recorded: dict[str, Any] | None = None, pooled: bool = False, strict: bool = True) -> Sorted:
    """Decode, compute descriptors with ``network``'s pretrained body, group near-duplicates and
    split: the one path of the trainer and of ``galley dataset inspect``, so what inspect shows is
    what a job would train on. ``not_searched`` says why near-duplicates are not looked for (no
    weights, an untrained network); ``recorded`` is a resumed job's split, kept as it was;
    ``pooled`` keeps the warm-up's features; ``strict=False`` collects in ``stops`` what would end
    a job instead of raising it."""
    stops: list[str] = []

    def stop(message: str) -> None:
        if strict:
            raise TrainingError(message, reasons.DATASET_INVALID)
        stops.append(message)

    labels = sorted({s.label for s in samples})
    preprocessing = Preprocessing.for_size(settings.image_size)
    decoded, too_many = decode_all(samples, labels, settings, preprocessing, placement.accelerator, reporter)
    if too_many:
        stop(too_many)
    wanted = settings.near_duplicates == "group"
    if network is None and not_searched is None:
        not_searched = "no network to compute descriptors with"
    if wanted and not_searched is not None:
        reporter.say("near-duplicates: not searched (%s); the split goes photo by photo", not_searched)
    search = wanted and not_searched is None and recorded is None
    features = None
    if network is not None and (search or pooled):
        loader = loop.make_loader(loop.ImageDataset(decoded, preprocessing, transforms.eval_from_cache(preprocessing)),
                                  settings.eval_batch_size, workers=settings.num_workers)
        features = loop.extract_features(network, loader, placement, descriptors=search, on_step=reporter.step)
    found = None
    record: dict[str, Any] | None
    if recorded is not None:
        reporter.say("split: the one recorded in %s when the job started", SPLIT_FILE)
        # In the recorded order: the epoch's batches index the training set, so a resumed epoch must
        # find the same photo at each position.
        where = {s.source: i for i, s in enumerate(decoded.samples)}
        train_index = [where[source] for source, _ in recorded.get("train", []) if source in where]
        eval_index = [where[source] for source, _ in recorded.get("eval", []) if source in where]
        record = recorded
    else:
        groups = None
        if features is not None and features.descriptors is not None:
            started = time.monotonic()
            found = grouping.find_groups(features.descriptors, decoded.targets, settings.near_duplicate_threshold)
            groups = distributed.from_main(found.of, world)
            sizes = found.summary()
            reporter.say("near-duplicates: %d groups holding %d of %d photos (threshold %g, %.1fs); each group "
                         "stays on one side of the split", sizes["groups"], sizes["photos"], len(decoded),
                         settings.near_duplicate_threshold, time.monotonic() - started)
        try:
            split = data.split(decoded.samples, split_text, settings.seed, groups)
        except data.DatasetError as error:
            stop(str(error))
            return Sorted(labels, decoded, [], [], None, features, found, not_searched, stops)
        if split.straddling:
            reporter.say("warning: the data set's usage puts %d near-duplicate group(s) on both sides of the split, "
                         "so evaluation accuracy is optimistic for them; first: %s", len(split.straddling),
                         ", ".join(split.straddling[0][:3]))
        position = {id(s): i for i, s in enumerate(decoded.samples)}
        train_index = [position[id(s)] for s in split.train]
        eval_index = [position[id(s)] for s in split.eval]
        record = split.split_record()
        record["near_duplicate_threshold"] = settings.near_duplicate_threshold if groups is not None else None
    trained = {decoded.targets[i] for i in train_index}
    for index, label in enumerate(labels):
        if index not in trained:
            stop(f"class {label!r} has no readable training image")
    return Sorted(labels, decoded, train_index, eval_index, record, features, found, not_searched, stops)


def prepare(job: TrainingJob, samples: list[data.Sample], settings: Resolved, network: nn.Module,
            placement: loop.Placement, world: distributed.World, reporter: Reporter, *,
            resumed_epoch: int | None) -> Prepared:
    """Decode, find near-duplicates, split (:func:`sort_photos`), and keep the warm-up's features
    (each only when needed: a resumed job keeps its recorded split, and past the warm-up needs no features)."""
    recorded = _recorded_split(job.spec.output.uri) if resumed_epoch is not None else None
    done = sort_photos(samples, settings, job.spec.dataset.split, network=network,
                       not_searched=None if job.spec.algorithm.pretrained else UNTRAINED, placement=placement,
                       world=world, reporter=reporter, recorded=recorded,
                       pooled=settings.warmup_epochs > (resumed_epoch or 0))
    assert done.record is not None  # strict: no split raised
    labels, decoded, record = done.labels, done.decoded, done.record
    train_set, eval_set = decoded.subset(done.train_index), decoded.subset(done.eval_index)
    counts = {label: train_set.targets.count(i) for i, label in enumerate(labels)}
    reporter.say("data: %d classes, %d training and %d evaluation images; per class: %s", len(labels),
                 len(train_set), len(eval_set), ", ".join(f"{k} {v}" for k, v in counts.items()))
    groups_found = record.get("near_duplicate_groups")
    summary: dict[str, Any] = {
        "train_images": len(train_set), "eval_images": len(eval_set), "skipped_images": len(decoded.skipped),
        "near_duplicate_groups": None if record.get("near_duplicate_threshold") is None else len(groups_found or []),
        "near_duplicate_photos": sum(len(g) for g in groups_found or []),
        "straddling_groups": len(record.get("straddling_groups") or []),
    }
    if world.is_main and recorded is None:
        storage.write_text(storage.join(job.spec.output.uri, SPLIT_FILE), json.dumps(record, ensure_ascii=False) + "\n")
    split_features = None
    if done.features is not None:
        split_features = (done.features.pooled[done.train_index], done.features.pooled[done.eval_index])
    return Prepared(labels, train_set, eval_set, split_features, summary)
