"""The GPU check: Galley's training step on the GPUs a machine has, against a plain torchvision AMP
loop on the same device, and the state a resumed GPU run depends on.

Where CUDA is present it:

1. trains ResNet50 (random init, synthetic batches already in pinned memory, channels_last, float16
   autocast with a GradScaler) for ``--steps`` steps through Galley's ``train_one_epoch``, then the
   same steps through a plain torchvision AMP loop (after a warm-up, alternated, the better of two
   runs each), and prints both figures in images per second and their ratio (NVIDIA publishes
   about 1,200 img/s for ResNet50 with AMP on one V100; compare the plain loop's figure with that,
   naming the GPU);
2. checks that a checkpoint keeps the GradScaler's state and the CUDA generators: after a restore,
   the scale and the next random draws are the ones the saved run had;
3. with 2 GPUs or more, runs 2 ranks with NCCL (one process per GPU, as a pod does): every
   collective Galley uses, and DDP steps whose weights end equal on both ranks.

Without CUDA it says so, runs the same code at smoke size on the CPU (2 ranks over gloo for step
3), so that the check does not rot, and exits 0.

    .venv/bin/python benchmarks/gpu_check.py [--steps 300] [--batch-size 128] [--image-size 224]
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.multiprocessing as mp
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from galley.model import architectures
from galley.model.hardware import Accelerator, choose
from galley.trainer import checkpoint, distributed, loop


def _batches(steps: int, batch_size: int, image_size: int, classes: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, image_size, image_size, generator=generator)
    targets = torch.randint(0, classes, (batch_size,), generator=generator)
    if torch.cuda.is_available():
        images, targets = images.pin_memory(), targets.pin_memory()
    return [(images, targets)] * steps


def _network(accelerator: Accelerator, classes: int) -> nn.Module:
    torch.manual_seed(0)
    network = architectures.build("resnet50", classes).to(memory_format=torch.channels_last)
    return network.to(accelerator.device).train()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _images_per_second(run: Callable[[list[tuple[torch.Tensor, torch.Tensor]]], object],
                       batches: list[tuple[torch.Tensor, torch.Tensor]], device: torch.device) -> float:
    """``run`` over all but the first two batches, timed after running it over those two (warm-up)."""
    run(batches[:2])
    _sync(device)
    started = time.perf_counter()
    run(batches[2:])
    _sync(device)
    return sum(len(t) for _, t in batches[2:]) / (time.perf_counter() - started)


def galley_step_rate(accelerator: Accelerator, batches: list[tuple[torch.Tensor, torch.Tensor]],
                     classes: int) -> float:
    """Images per second through Galley's training step (after two warm-up steps)."""
    network = _network(accelerator, classes)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler(enabled=accelerator.autocast_dtype == torch.float16)
    options = {"optimizer": optimizer, "scaler": scaler, "loss_fn": nn.CrossEntropyLoss(),
               "placement": loop.Placement(accelerator), "world": distributed.World(), "total": 0}
    return _images_per_second(lambda part: loop.train_one_epoch(network, part, **options),  # type: ignore[arg-type]
                              batches, accelerator.device)


def plain_step_rate(accelerator: Accelerator, batches: list[tuple[torch.Tensor, torch.Tensor]],
                    classes: int) -> float:
    """Images per second through the AMP loop of torchvision's classification reference."""
    device = accelerator.device
    network = _network(accelerator, classes)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler(enabled=device.type == "cuda")
    criterion = nn.CrossEntropyLoss()

    def run(part: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        for images, targets in part:
            images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            targets = targets.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=accelerator.autocast_dtype or torch.bfloat16,
                                enabled=accelerator.autocast_dtype is not None):
                loss = criterion(network(images), targets)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    return _images_per_second(run, batches, device)


def resume_state_survives(accelerator: Accelerator) -> list[str]:
    """What a checkpoint must bring back on a GPU: the GradScaler's scale and growth, and the CUDA
    generators (dropout masks and augmentation after a resume). Problems found, none when it holds."""
    problems = []
    scaler = torch.amp.GradScaler(init_scale=2.0 ** 12, enabled=accelerator.device.type == "cuda")
    if scaler.is_enabled():
        scaler.update(new_scale=torch.tensor(1024.0, device=accelerator.device))
    saved = io.BytesIO()
    torch.save({"scaler": scaler.state_dict(), "rng": checkpoint.rng_states()}, saved)
    expected = torch.rand(4, device=accelerator.device).cpu()
    loaded = torch.load(io.BytesIO(saved.getvalue()), map_location="cpu", weights_only=True)
    restored = torch.amp.GradScaler(enabled=scaler.is_enabled())
    restored.load_state_dict(loaded["scaler"])
    if scaler.is_enabled() and restored.get_scale() != scaler.get_scale():
        problems.append(f"GradScaler scale {restored.get_scale()} after the restore, {scaler.get_scale()} before")
    checkpoint.restore_rng(loaded["rng"])
    again = torch.rand(4, device=accelerator.device).cpu()
    if not torch.equal(expected, again):
        problems.append(f"{accelerator.device.type} random draws differ after restoring the generators")
    return problems


def _rank(local_rank: int, size: int, port: int, results: dict[int, str]) -> None:
    """One GPU's process (or a CPU rank): join, run every collective, train 3 DDP steps."""
    os.environ.update({"WORLD_SIZE": str(size), "LOCAL_WORLD_SIZE": str(size), "LOCAL_RANK": str(local_rank),
                       "RANK": str(local_rank), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    accelerator = choose()
    world = distributed.from_environment(accelerator.device)
    try:
        device = world.device if world.device.type == "cuda" else accelerator.device
        total = distributed.sum_across([1.0, float(world.rank)], world)
        chosen = distributed.from_main(world.rank + 10, world)
        stop = distributed.any_across(world.rank == 1, world)
        distributed.barrier(world)
        torch.manual_seed(0)
        network = distributed.wrap(nn.Linear(8, 4).to(device), world)
        optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
        for step in range(3):
            data = torch.full((2, 8), float(world.rank + step), device=device)
            optimizer.zero_grad()
            network(data).sum().backward()
            optimizer.step()
        weights = torch.cat([p.detach().flatten() for p in network.parameters()])
        first = distributed.from_main(weights.cpu().tolist(), world)
        same = torch.allclose(weights.cpu(), torch.tensor(first))
        ok = total == [2.0, 1.0] and chosen == 10 and stop and same
        results[world.rank] = f"rank {world.rank} on {device} ({world.backend}): " + (
            "collectives and DDP steps agree" if ok else f"MISMATCH sums {total} broadcast {chosen} stop {stop} "
                                                         f"weights equal {same}")
    finally:
        distributed.leave(world)


def two_ranks() -> list[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    manager = mp.Manager()
    results = manager.dict()
    mp.start_processes(_rank, args=(2, port, results), nprocs=2, join=True, start_method="spawn")
    return [results[r] for r in sorted(results.keys())]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args()
    gpus = torch.cuda.device_count()
    if gpus:
        steps, batch_size, image_size = args.steps, args.batch_size, args.image_size
        print(f"GPU: {torch.cuda.get_device_name(0)} ({gpus} visible), torch {torch.__version__}, "
              f"CUDA {torch.version.cuda}")
    else:
        steps, batch_size, image_size = 4, 2, 64
        print("no GPU found: running the check's code at smoke size on the CPU "
              f"({steps} steps of batch {batch_size} at {image_size} px); no GPU figures")
    accelerator = choose()
    print(f"device: {accelerator.reason}")
    batches = _batches(steps + 2, batch_size, image_size, classes=1000)
    plain_step_rate(accelerator, batches[:4], classes=1000)  # kernel selection and allocator warm-up, not counted
    ours, theirs = 0.0, 0.0
    for _ in range(2):  # alternated, the better of two each: the first pass of either pays one-off costs
        ours = max(ours, galley_step_rate(accelerator, batches, classes=1000))
        theirs = max(theirs, plain_step_rate(accelerator, batches, classes=1000))
    print(f"ResNet50 training step, batch {batch_size}, {image_size} px: Galley {ours:.1f} img/s, plain "
          f"torchvision AMP loop {theirs:.1f} img/s, ratio {ours / theirs:.2f}x"
          + (" (NVIDIA's published figure: about 1,200 img/s on one V100 with AMP)" if gpus
             else " (smoke size on a CPU: the code ran, the figures mean nothing)"))
    problems = resume_state_survives(accelerator)
    print("resume state: " + ("GradScaler and generators come back as saved" if not problems else "; ".join(problems)))
    if gpus >= 2 or not gpus:
        lines = two_ranks()
        print("\n".join(lines))
        problems += [line for line in lines if "MISMATCH" in line]
    else:
        print("2 ranks with NCCL: skipped, one GPU visible")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
