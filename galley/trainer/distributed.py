"""Data-parallel training over several processes or nodes with torch.distributed.

Each rank trains on its own shard of the training images; after every backward pass gradients are
averaged across ranks (all-reduce), so every rank takes the same optimizer step and holds the same
weights. Ranks agree on the number of steps per epoch (the smallest shard's), evaluate on the full
evaluation set, and only rank 0 writes checkpoints, progress and the package. Gloo on CPUs, NCCL
on GPUs; the rendezvous comes from the standard environment (``WORLD_SIZE``, ``RANK``,
``MASTER_ADDR``, ``MASTER_PORT``), which the operator and the embedded backend set.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


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
    dist.init_process_group(backend, rank=rank, world_size=size, timeout=timedelta(minutes=30))
    return World(rank, size)


def shard(items: Sequence[T], world: World) -> list[T]:
    """This rank's share: every ``size``-th item, starting at ``rank``."""
    return list(items[world.rank :: world.size])


def common_steps(steps: int, world: World) -> int:
    """The number of steps every rank can take (the smallest)."""
    if not world.distributed:
        return steps
    value = torch.tensor([steps], dtype=torch.int64)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return int(value.item())


def average_gradients(parameters: Iterable[torch.nn.Parameter], world: World) -> None:
    if not world.distributed:
        return
    for parameter in parameters:
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
            parameter.grad /= world.size


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
