"""Data-parallel training over several processes or nodes with torch.distributed.

The standard way: the network is wrapped in ``DistributedDataParallel`` (gradients all-reduced
in buckets during the backward pass), and a ``DistributedSampler`` gives each rank its share of
the training images, reshuffled every epoch through ``set_epoch``. Every rank evaluates on the full
evaluation set; only rank 0 writes checkpoints, progress and the package. Gloo on CPUs, NCCL on
GPUs; the rendezvous comes from the standard environment (``WORLD_SIZE``, ``RANK``,
``MASTER_ADDR``, ``MASTER_PORT``), which the operator and the embedded backend set.

When a rank dies, its peers' next collective fails (gloo sees the closed connection at once; a
rank that hangs is given up on after ``COLLECTIVE_TIMEOUT``), the surviving ranks exit non-zero,
and the Job's retry resumes every rank from the last checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler

T = TypeVar("T")
TIMEOUT_ENV = "GALLEY_COLLECTIVE_TIMEOUT_SECONDS"
COLLECTIVE_TIMEOUT = timedelta(minutes=10)
"""How long a rank waits for its peers in one collective before failing (``$GALLEY_COLLECTIVE_TIMEOUT_SECONDS``)."""


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def from_environment(device: torch.device) -> World:
    """Join the process group described by the environment, or a world of one."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    rank = int(os.environ.get("RANK") or os.environ.get("JOB_COMPLETION_INDEX") or "0")
    backend = "nccl" if device.type == "cuda" else "gloo"
    seconds = os.environ.get(TIMEOUT_ENV)
    timeout = timedelta(seconds=float(seconds)) if seconds else COLLECTIVE_TIMEOUT
    dist.init_process_group(backend, rank=rank, world_size=size, timeout=timeout)
    return World(rank, size)


def wrap(module: nn.Module, world: World) -> nn.Module:
    """``module`` as DistributedDataParallel when there are several ranks, else itself."""
    if not world.distributed:
        return module
    return DistributedDataParallel(module)


def sampler(dataset: Dataset[Any], world: World, seed: int) -> DistributedSampler[Any] | None:
    """This rank's share of ``dataset``, reshuffled by ``set_epoch``; None with one rank."""
    if not world.distributed:
        return None
    return DistributedSampler(dataset, num_replicas=world.size, rank=world.rank, shuffle=True, seed=seed)


def from_main(value: T, world: World) -> T:
    """Rank 0's ``value`` on every rank (decisions such as the split, made once)."""
    if not world.distributed:
        return value
    holder: list[Any] = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def sum_across(values: Sequence[float], world: World) -> list[float]:
    """Element-wise sums over ranks (losses, counts)."""
    if not world.distributed:
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def leave(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
