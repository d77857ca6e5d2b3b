"""One process per GPU: the layout of ranks, the device every collective uses, and the embedded
emulation of two nodes of two GPUs each (gloo on the CPU; no GPU exists here, which is why the NCCL
side is checked through the device objects it would use rather than by running NCCL)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DistributedSampler

from galley.control import termination
from galley.model.package import read_config
from galley.trainer import distributed, launch
from tests.trainer.helpers import job_manifest, write_job


def test_each_gpu_process_drives_its_own_gpu_and_knows_its_global_rank() -> None:
    world = distributed.plan({"WORLD_SIZE": "16", "LOCAL_WORLD_SIZE": "8", "NODE_RANK": "1", "LOCAL_RANK": "3"},
                             gpus=8)
    assert (world.rank, world.size, world.local_rank, world.node_rank) == (11, 16, 3, 1)
    assert world.backend == "nccl" and world.device == torch.device("cuda", 3)
    cpu = distributed.plan({"WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0"}, gpus=0)
    assert (cpu.backend, cpu.device, cpu.node_rank) == ("gloo", torch.device("cpu"), 1)
    assert distributed.plan({}, gpus=1).device == torch.device("cuda", 0)  # one GPU, one process


@pytest.mark.parametrize(("environ", "gpus", "named"), [
    ({"WORLD_SIZE": "2", "RANK": "2"}, 0, "$RANK=2"),
    ({"WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "3"}, 0, "$LOCAL_WORLD_SIZE=3"),
    ({"WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2", "LOCAL_RANK": "1"}, 1, "sees 1 GPU"),
    ({"WORLD_SIZE": "two"}, 0, "$WORLD_SIZE='two'"),
])
def test_a_rendezvous_that_cannot_work_is_refused_naming_the_variable(environ: dict[str, str], gpus: int,
                                                                      named: str) -> None:
    with pytest.raises(distributed.RendezvousError, match=re.escape(named)):
        distributed.plan(environ, gpus)


class _Stop(Exception):
    """Raised by the recording collectives once they have seen their arguments."""


def test_every_collective_runs_on_the_process_groups_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """NCCL serves only CUDA tensors. With no GPU here, ``meta`` stands in for the group's device where
    a tensor must be made, and a ``cuda:1`` device object where only the device is passed on: a CPU
    tensor, or a call without the device, is what this catches."""
    seen: list[tuple[str, Any]] = []

    def all_reduce(tensor: torch.Tensor, op: Any = None) -> None:
        seen.append(("all_reduce", tensor.device))
        raise _Stop

    monkeypatch.setattr(distributed.dist, "all_reduce", all_reduce)
    monkeypatch.setattr(distributed.dist, "broadcast_object_list",
                        lambda objects, src=None, device=None: seen.append(("broadcast", device)))
    monkeypatch.setattr(distributed.dist, "barrier", lambda device_ids=None: seen.append(("barrier", device_ids)))
    monkeypatch.setattr(distributed, "DistributedDataParallel",
                        lambda module, device_ids=None, output_device=None: seen.append(("ddp", device_ids)))
    stand_in = distributed.World(1, 4, 1, 2, "nccl", torch.device("meta"))
    for collective in (lambda: distributed.sum_across([1.0, 2.0], stand_in),
                       lambda: distributed.any_across(True, stand_in)):
        with pytest.raises(_Stop):
            collective()
    gpu = distributed.World(1, 4, 1, 2, "nccl", torch.device("cuda", 1))
    distributed.from_main({"split": [1, 2]}, gpu)
    distributed.barrier(gpu)
    distributed.wrap(torch.nn.Linear(2, 2), gpu)
    assert seen == [("all_reduce", torch.device("meta")), ("all_reduce", torch.device("meta")),
                    ("broadcast", torch.device("cuda", 1)), ("barrier", [1]), ("ddp", [1])]


def test_the_epoch_order_is_distributed_samplers_and_a_resumed_epoch_skips_exactly_what_was_done() -> None:
    dataset = list(range(23))
    for size in (1, 3):
        shares = []
        for rank in range(size):
            world = distributed.World(rank, size)
            reference: DistributedSampler[int] = DistributedSampler(dataset, num_replicas=size, rank=rank,  # type: ignore[arg-type]
                                                                    shuffle=True, seed=7)
            reference.set_epoch(4)
            ours = list(distributed.EpochSampler(len(dataset), world, seed=7, epoch=4))
            assert ours == list(reference)
            assert list(distributed.EpochSampler(len(dataset), world, seed=7, epoch=4, start=5)) == ours[5:]
            assert len(distributed.EpochSampler(len(dataset), world, seed=7, epoch=4, start=5)) == len(ours) - 5
            shares += ours
        assert set(shares) == set(dataset)
    world = distributed.World()
    assert list(distributed.EpochSampler(23, world, 7, 4)) != list(distributed.EpochSampler(23, world, 7, 5))


def test_exit_statuses_of_ranks_combine_into_the_most_telling() -> None:
    preempted, permanent = termination.EXIT_PREEMPTED, termination.EXIT_PERMANENT
    assert launch.combined_exit_status([0, 0]) == 0
    assert launch.combined_exit_status([preempted, preempted, 0]) == preempted
    assert launch.combined_exit_status([preempted, 1]) == 1  # a crash is not a checkpointed stop
    assert launch.combined_exit_status([1, permanent]) == permanent


def test_the_embedded_mode_gives_each_node_its_own_gpus_or_says_it_has_too_few() -> None:
    assert launch.ranks_per_node(8, 2, machine_gpus=0) == 1  # no GPU: one rank per node, unless asked
    assert launch.ranks_per_node(8, 2, machine_gpus=0, asked="2") == 2
    assert launch.ranks_per_node(8, 2, machine_gpus=4) == 2
    assert [launch.visible_devices(n, 2, 4) for n in (0, 1)] == ["0,1", "2,3"]
    assert launch.visible_devices(0, 2, 0) is None
    with pytest.raises(ValueError, match="has 2 GPU"):
        launch.visible_devices(1, 2, 2)
    with pytest.raises(ValueError, match="GALLEY_NPROC_PER_NODE"):
        launch.ranks_per_node(8, 2, machine_gpus=0, asked="zero")


def test_two_nodes_of_two_ranks_train_together_each_rank_with_its_own_local_rank(
        tmp_path: Path, food_photos: Any, mobilenet_weights: str) -> None:
    """The embedded mode lays out a 2-node job of 2 GPUs per node as the cluster would (a launcher per
    node, a process per GPU), emulated with gloo on the CPU."""
    output = tmp_path / "out"
    manifest = job_manifest("two-by-two", str(food_photos.manifest), str(output), weights=mobilenet_weights,
                            learning_rate_strategy="2:0.001", image_size="64", batch_size="8")
    manifest["spec"]["resources"] = {"nodes": 2}
    job = write_job(tmp_path / "job.yaml", manifest)
    env = {**os.environ, launch.NPROC_PER_NODE_ENV: "2"}
    done = subprocess.run([sys.executable, "-m", "galley.trainer", "-f", str(job)], capture_output=True, text=True,
                          timeout=600, env=env)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    layout = set(re.findall(r"rank (\d) of 4 \(node (\d), local rank (\d), cpu, gloo\)", out))
    assert layout == {("0", "0", "0"), ("1", "0", "1"), ("2", "1", "0"), ("3", "1", "1")}, out[-4000:]
    assert read_config(str(output / "model")).labels == ["水果", "花", "蔬菜", "鸟"]
