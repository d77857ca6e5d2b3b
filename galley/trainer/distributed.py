"""Data-parallel training over several processes, GPUs or nodes with torch.distributed.

The standard way: one process per GPU (or, without GPUs, per node), the network wrapped in
``DistributedDataParallel`` (gradients all-reduced in buckets during the backward pass), and a
sampler that gives each rank its share of the training images, reshuffled every epoch from the
epoch's seed. Every rank evaluates on the full evaluation set; only rank 0 writes checkpoints,
progress and the package. Gloo on CPUs, NCCL on GPUs; the rendezvous comes from the standard
environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``), which the operator, the pod's launcher (:mod:`galley.trainer.launch`) and the
embedded backend set.

Every collective's tensors live on the process group's device (:attr:`World.device`): NCCL serves
only CUDA tensors, so a CPU tensor there raises on the first sum.

When a rank dies, its peers' next collective fails (gloo sees the closed connection at once; a
rank that hangs is given up on after ``COLLECTIVE_TIMEOUT``), the surviving ranks exit non-zero,
and the Job's retry resumes every rank from the last checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Sampler

T = TypeVar("T")
TIMEOUT_ENV = "GALLEY_COLLECTIVE_TIMEOUT_SECONDS"
COLLECTIVE_TIMEOUT = timedelta(minutes=10)
"""How long a rank waits for its peers in one collective before failing (``$GALLEY_COLLECTIVE_TIMEOUT_SECONDS``)."""
CPU = torch.device("cpu")


class RendezvousError(ValueError):
    """The rendezvous variables contradict each other; the message names the variable."""


@dataclass(frozen=True)
class World:
    """This process's place among the training processes, and where its collectives run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    """This process's index among the processes of its pod (node): the GPU it drives."""
    local_size: int = 1
    backend: str = "gloo"
    device: torch.device = field(default=CPU)
    """The process group's device: every collective's tensors are put here (``cuda:LOCAL_RANK`` under NCCL)."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def node_rank(self) -> int:
        return self.rank // self.local_size


def _number(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise RendezvousError(f"${name}={text!r}: expected a whole number") from None


def plan(environ: Mapping[str, str], gpus: int) -> World:
    """This process's :class:`World` from the rendezvous variables, on a machine that shows it ``gpus``
    GPUs (pure: nothing is joined). The global rank is ``RANK``, or else ``NODE_RANK`` (or the Job's
    completion index) times ``LOCAL_WORLD_SIZE`` plus ``LOCAL_RANK``."""
    size = _number(environ, "WORLD_SIZE", 1)
    local_size = _number(environ, "LOCAL_WORLD_SIZE", 1)
    local_rank = _number(environ, "LOCAL_RANK", 0)
    node = _number(environ, "NODE_RANK", _number(environ, "JOB_COMPLETION_INDEX", 0))
    rank = _number(environ, "RANK", node * local_size + local_rank)
    if size < 1 or not 0 <= rank < size:
        raise RendezvousError(f"$RANK={rank} is outside $WORLD_SIZE={size}")
    if local_size < 1 or not 0 <= local_rank < local_size or size % local_size:
        raise RendezvousError(f"$LOCAL_RANK={local_rank} and $LOCAL_WORLD_SIZE={local_size} do not fit "
                              f"$WORLD_SIZE={size} (it must be nodes x processes per node)")
    if gpus <= 0:
        return World(rank, size, local_rank, local_size, "gloo", CPU)
    if local_rank >= gpus:
        raise RendezvousError(f"$LOCAL_RANK={local_rank} but this process sees {gpus} GPU(s): one process per GPU")
    return World(rank, size, local_rank, local_size, "nccl", torch.device("cuda", local_rank))


def from_environment(device: torch.device) -> World:
    """Join the process group described by the environment (or a world of one), with CUDA's current
    device set to this process's GPU first."""
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    world = plan(os.environ, gpus)
    if world.device.type == "cuda":
        torch.cuda.set_device(world.device)
    if not world.distributed:
        return world
    seconds = os.environ.get(TIMEOUT_ENV)
    timeout = timedelta(seconds=float(seconds)) if seconds else COLLECTIVE_TIMEOUT
    dist.init_process_group(world.backend, rank=world.rank, world_size=world.size, timeout=timeout,
                            device_id=world.device if world.device.type == "cuda" else None)
    return world


def wrap(module: nn.Module, world: World) -> nn.Module:
    """``module`` as DistributedDataParallel when there are several ranks (on this rank's GPU), else itself."""
    if not world.distributed:
        return module
    if world.device.type == "cuda":
        return DistributedDataParallel(module, device_ids=[world.device.index], output_device=world.device.index)
    return DistributedDataParallel(module)


class EpochSampler(Sampler[int]):
    """This rank's share of ``length`` images in the order fixed by ``seed`` and the epoch, from
    position ``start`` on: a resumed epoch skips exactly the batches it had done.

    The order is that of ``DistributedSampler`` (a permutation drawn from ``seed + epoch``, padded
    by repeating its head to a multiple of the ranks, then every ``size``-th index from ``rank``),
    and one rank is the same as ``shuffle=True`` seeded per epoch.
    """

    def __init__(self, length: int, world: World, seed: int, epoch: int, start: int = 0):
        self.length, self.world, self.seed, self.epoch, self.start = length, world, seed, epoch, start

    def order(self) -> list[int]:
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        indices = torch.randperm(self.length, generator=generator).tolist()
        total = -(-self.length // self.world.size) * self.world.size
        while indices and len(indices) < total:
            indices += indices[: total - len(indices)]
        return indices[self.world.rank:total:self.world.size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.order()[self.start:])

    def __len__(self) -> int:
        return max(0, -(-self.length // self.world.size) - self.start)


def from_main(value: T, world: World) -> T:
    """Rank 0's ``value`` on every rank (decisions such as the split, made once)."""
    if not world.distributed:
        return value
    holder: list[Any] = [value]
    dist.broadcast_object_list(holder, src=0, device=world.device)
    return holder[0]


def sum_across(values: Sequence[float], world: World) -> list[float]:
    """Element-wise sums over ranks (losses, counts)."""
    if not world.distributed:
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.float64, device=world.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().tolist()


def any_across(flag: bool, world: World) -> bool:
    """True on every rank when ``flag`` is true on any (a stop that one rank was asked for)."""
    if not world.distributed:
        return flag
    tensor = torch.tensor([1 if flag else 0], dtype=torch.int32, device=world.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.cpu().item())


def barrier(world: World) -> None:
    if not world.distributed:
        return
    if world.device.type == "cuda":
        dist.barrier(device_ids=[world.device.index])
    else:
        dist.barrier()


def leave(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
