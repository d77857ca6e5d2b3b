"""The steps a training run is made of, as free functions (the shape of torchvision's
classification reference): features for the warm-up and near-duplicate search, training the head
on them, ``train_one_epoch``, and ``predict`` for evaluation.

Each takes what it works on as arguments, so the run in :mod:`galley.trainer.engine` reads as
the sequence of these calls.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from galley.model import architectures
from galley.model.hardware import Accelerator
from galley.model.preprocessing import Preprocessing
from galley.trainer import distributed, grouping, images, preemption

StepCallback = Callable[[str, int, int], None]
"""``(stage, done, total)`` during an epoch (the embedded backend's progress bar)."""


class ImageDataset(Dataset[tuple[torch.Tensor, int]]):
    """Decoded images (cached or read on demand) through a transform."""

    def __init__(self, decoded: images.DecodedSet, preprocessing: Preprocessing, transform: Any):
        self.decoded = decoded
        self.preprocessing = preprocessing
        self.transform = transform

    def __len__(self) -> int:
        return len(self.decoded)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        cached = self.decoded.images
        image = cached[i] if cached is not None else images.load_one(self.decoded.samples[i], self.preprocessing)
        return self.transform(image), self.decoded.targets[i]


def make_loader(dataset: ImageDataset, batch_size: int, *, workers: int = 0,
                sampler: Sampler[int] | None = None, seed: int | None = None) -> DataLoader[Any]:
    """Batches in ``sampler``'s order (training: :class:`galley.trainer.distributed.EpochSampler`), else in order.

    A loader draws its workers' base seed when it starts iterating; with ``seed`` it draws from a
    generator of its own instead of the global one, so that starting a resumed epoch's loader leaves
    the global generator (augmentation, dropout) exactly where the checkpoint left it.
    """
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, sampler=sampler, generator=generator,
                      num_workers=workers, persistent_workers=False, drop_last=False)


@dataclass(frozen=True)
class Placement:
    """Where tensors go and in which precision they are computed (see :mod:`galley.model.hardware`)."""

    accelerator: Accelerator

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        dtype = self.accelerator.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.accelerator.device.type, dtype=dtype)

    def put(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.accelerator.device, non_blocking=True)
        if self.accelerator.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch


@dataclass(frozen=True)
class Features:
    """What one pass of the pretrained body gives per photo."""

    pooled: torch.Tensor
    """The head's input (the maps' spatial mean), for the frozen-backbone warm-up."""
    descriptors: np.ndarray | None
    """Near-duplicate search descriptors (see :func:`galley.trainer.grouping.descriptors`), when asked for."""


@torch.inference_mode()
def extract_features(network: nn.Module, loader: DataLoader[Any], placement: Placement, *, descriptors: bool,
                     on_step: StepCallback | None = None) -> Features:
    """Pooled features for every photo of ``loader``, and with ``descriptors`` the near-duplicate
    search's, which also run each photo flipped left-right (the warm-up alone needs neither)."""
    body = architectures.feature_maps(network).eval()
    pooled: list[torch.Tensor] = []
    found: list[np.ndarray] = []
    done = 0
    total = len(loader.dataset)  # type: ignore[arg-type]
    for batch, _ in loader:
        batch = placement.put(batch)
        with placement.autocast():
            maps = body(batch).float()
            if descriptors:
                flipped = body(batch.flip(-1)).float()
                found.append(grouping.descriptors(maps.cpu().numpy(), flipped.cpu().numpy()))
        pooled.append(maps.mean(dim=(2, 3)))
        done += len(batch)
        if on_step is not None:
            on_step("features", done, total)
    if not pooled:
        return Features(torch.empty(0), np.zeros((0, 0), dtype=np.float32) if descriptors else None)
    return Features(torch.cat(pooled), np.concatenate(found) if descriptors else None)


def freeze_batch_norm(network: nn.Module) -> None:
    """Keep batch-norm layers on their pretrained running statistics while the rest trains: a small
    fine-tuning set gives noisy batch statistics, and the pretrained ones are better estimates."""
    for module in network.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


@dataclass(frozen=True)
class EpochOutcome:
    """What one pass over the training images did, summed over every rank."""

    loss: float
    accuracy: float
    steps: int
    """Steps done in this epoch, those of an earlier run of it included."""
    images: int
    """Images trained on in this run (a resumed epoch's earlier part not counted)."""
    stopped: bool = False
    """Every rank stopped at ``steps`` because one was asked to (SIGTERM): the epoch is not done."""
    sums: tuple[float, int, int] = (0.0, 0, 0)
    """Loss sum, correct and seen over the steps done, to carry into the rest of the epoch."""


def train_one_epoch(model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
                    optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, loss_fn: nn.Module,
                    placement: Placement, world: distributed.World, total: int, ramp_steps: int = 0,
                    on_step: StepCallback | None = None, start_step: int = 0,
                    carried: tuple[float, int, int] = (0.0, 0, 0),
                    stop: preemption.StopRequest = preemption.NEVER) -> EpochOutcome:
    """One pass over the training images, every layer trained; loss and accuracy over every rank.

    With ``ramp_steps``, the learning rates rise linearly from near zero to the optimizer's over
    that many steps: the first steps of a fresh Adam on pretrained layers are its largest, and
    would undo what the frozen-backbone warm-up learned.

    A resumed epoch passes the steps it had done (``start_step``; ``loader`` yields only the rest)
    and their sums (``carried``). Before each step every rank learns whether any was asked to
    stop; if so they all stop there, and the outcome says so.
    """
    targets_lr = [group["lr"] for group in optimizer.param_groups]
    loss_sum, correct, count = 0.0, 0, 0
    step, stopped = start_step, False
    batches = iter(loader)
    while True:
        if distributed.any_across(stop.requested, world):
            stopped = True
            break
        try:
            batch, targets = next(batches)
        except StopIteration:
            break
        if step < ramp_steps:
            for group, target in zip(optimizer.param_groups, targets_lr, strict=True):
                group["lr"] = target * (step + 1) / ramp_steps
        batch, targets = placement.put(batch), targets.to(placement.accelerator.device)
        with placement.autocast():
            logits = model(batch)
            loss = loss_fn(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        loss_sum += loss.item() * len(targets)
        correct += int((logits.argmax(1) == targets).sum())
        count += len(targets)
        step += 1
        if on_step is not None:
            on_step("train", carried[2] + count * world.size, total)
    for group, target in zip(optimizer.param_groups, targets_lr, strict=True):
        group["lr"] = target
    here = distributed.sum_across([loss_sum, correct, count], world)
    summed, right, seen = here[0] + carried[0], int(here[1]) + carried[1], int(here[2]) + carried[2]
    return EpochOutcome(summed / max(1, seen), right / max(1, seen), step, int(here[2]), stopped,
                        (summed, right, seen))


@torch.inference_mode()
def predict(network: nn.Module, loader: DataLoader[Any], placement: Placement, classes: int) -> np.ndarray:
    """Class probabilities for every photo of ``loader``."""
    network.eval()
    outputs = []
    for batch, _ in loader:
        with placement.autocast():
            outputs.append(torch.softmax(network(placement.put(batch)).float(), dim=1).cpu())
    return torch.cat(outputs).numpy() if outputs else np.zeros((0, classes))


def accuracy(probabilities: np.ndarray, targets: list[int]) -> float | None:
    if not len(targets):
        return None
    return float((probabilities.argmax(1) == np.asarray(targets)).mean())
