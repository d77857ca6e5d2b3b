"""Starting a TrainingJob's ranks as processes: one per GPU in a pod, and a whole job on one machine.

A pod whose flavor has G GPUs runs G ranks, as ``torch.distributed.run`` would: its container
(``python -m galley.trainer`` with ``LOCAL_WORLD_SIZE=G`` and no ``LOCAL_RANK``) is the launcher,
which starts ``python -m galley.trainer`` once per GPU with ``LOCAL_RANK`` and the global
``RANK = NODE_RANK x G + LOCAL_RANK``, forwards SIGTERM to them, and exits as they did.

The embedded backend runs a job's nodes the same way, as local processes over loopback, each a
launcher of its own ranks: one per GPU of the flavor that this machine has. Without a GPU a node
runs one rank, or ``$GALLEY_NPROC_PER_NODE`` ranks (as ``torchrun --nproc-per-node``), which then
run gloo on the CPU: an emulation of a GPU node's layout. Each rank gets an equal share of the
machine's CPU threads.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType

from galley.control import termination
from galley.model.hardware import available_cpus

INTERRUPTED = 130
NPROC_PER_NODE_ENV = "GALLEY_NPROC_PER_NODE"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def combined_exit_status(codes: Sequence[int]) -> int:
    """One exit status for ranks that exited with ``codes``: the most telling of them.

    A permanent failure wins (the Job must not retry), then an interrupt, then a preemption that
    every failing rank shares (each stopped with its checkpoint taken), then the worst other failure.
    """
    failing = [c for c in codes if c != 0]
    if not failing:
        return 0
    for wins in (termination.EXIT_PERMANENT, INTERRUPTED):
        if wins in failing:
            return wins
    if all(c == termination.EXIT_PREEMPTED for c in failing):
        return termination.EXIT_PREEMPTED
    return max((c for c in failing if c != termination.EXIT_PREEMPTED), key=abs)


def _wait_forwarding(processes: list[subprocess.Popen[bytes]]) -> list[int]:
    """Wait for every process, passing SIGTERM on to them all: each finishes its step and checkpoints."""

    def forward(signum: int, frame: FrameType | None) -> None:
        for p in processes:
            if p.poll() is None:
                p.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        return [p.wait() for p in processes]
    except KeyboardInterrupt:
        for p in processes:
            if p.poll() is None:
                p.terminate()
        for p in processes:
            p.wait()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def _command(verbose: bool) -> list[str]:
    return [sys.executable, "-m", "galley.trainer", *(["-v"] if verbose else [])]


def run_node_ranks(environ: Mapping[str, str] | None = None, verbose: bool = False) -> int:
    """In a pod (or one embedded node): start its ``LOCAL_WORLD_SIZE`` ranks; the combined exit status."""
    env = dict(os.environ if environ is None else environ)
    per_node = int(env["LOCAL_WORLD_SIZE"])
    node = int(env.get("NODE_RANK") or env.get("JOB_COMPLETION_INDEX") or "0")
    threads = env.get("GALLEY_THREADS") or str(max(1, available_cpus() // per_node))
    processes = []
    for local_rank in range(per_node):
        rank_env = {**env, "LOCAL_RANK": str(local_rank), "RANK": str(node * per_node + local_rank),
                    "NODE_RANK": str(node), "GALLEY_THREADS": threads}
        if local_rank and termination.ENV in rank_env:  # the node's first rank speaks for the node
            del rank_env[termination.ENV]
        processes.append(subprocess.Popen(_command(verbose), env=rank_env))
    return combined_exit_status(_wait_forwarding(processes))


def ranks_per_node(flavor_gpus: int, nodes: int, machine_gpus: int, asked: str | None = None) -> int:
    """How many ranks each embedded node runs: ``asked`` (``$GALLEY_NPROC_PER_NODE``) when given, else
    one per GPU of the flavor, as many as this machine has for each node, and one without a GPU."""
    if asked is not None and asked.strip():
        try:
            count = int(asked)
        except ValueError:
            count = 0
        if count < 1:
            raise ValueError(f"${NPROC_PER_NODE_ENV}={asked!r}: expected a whole number of ranks, 1 or more")
        return count
    if machine_gpus <= 0:
        return 1
    return max(1, min(max(1, flavor_gpus), machine_gpus // nodes))


def visible_devices(node: int, per_node: int, gpus: int) -> str | None:
    """``CUDA_VISIBLE_DEVICES`` for embedded node ``node``: its own ``per_node`` of this machine's
    ``gpus`` GPUs, so that no two ranks drive one GPU; None with no GPU (the CPU emulation)."""
    if gpus <= 0:
        return None
    first = node * per_node
    if first + per_node > gpus:
        raise ValueError(f"this machine has {gpus} GPU(s), fewer than the {first + per_node} that "
                         f"{node + 1} node(s) x {per_node} GPU(s) per node need: choose a flavor with fewer GPUs "
                         "or fewer resources.nodes")
    return ",".join(str(first + i) for i in range(per_node))


def run_local_ranks(job_json: str, nodes: int, per_node: int = 1, termination_log: Path | None = None,
                    gpus: int = 0, verbose: bool = False) -> int:
    """Run a job of ``nodes`` x ``per_node`` ranks on this machine (gloo over loopback without a GPU,
    NCCL with one GPU per rank); the combined exit status.

    Rank 0 leaves its reason for failing in ``termination_log`` (see :mod:`galley.control.termination`).
    """
    port = _free_port()
    threads = max(1, available_cpus() // (nodes * per_node))
    devices = [visible_devices(node, per_node, gpus) for node in range(nodes)]  # refuses before anything starts
    processes = []
    for node in range(nodes):
        env = {**os.environ, "WORLD_SIZE": str(nodes * per_node), "LOCAL_WORLD_SIZE": str(per_node),
               "NODE_RANK": str(node), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "GALLEY_THREADS": str(threads), "GALLEY_TRAINING_JOB": job_json}
        if per_node == 1:
            env.update({"RANK": str(node), "LOCAL_RANK": "0"})
        if devices[node] is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(devices[node])
        if termination_log is not None and node == 0:
            env[termination.ENV] = str(termination_log)
        processes.append(subprocess.Popen(_command(verbose), env=env))
    return combined_exit_status(_wait_forwarding(processes))
