"""What the machine (or container) offers: CPU quota, GPU, bf16 support.

Thread pools are sized to the container's CPU limit read from the cgroup, not to the host's core
count: a 1-core pod on a 64-core node that starts 64 threads runs slower, not faster.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only choose() needs torch; the predictor sizes its threads without it
    import torch


def cgroup_cpu_limit() -> float | None:
    """CPUs allowed by the cgroup quota (v2 ``cpu.max`` or v1 ``cfs_quota_us``), or None when unlimited."""
    v2 = Path("/sys/fs/cgroup/cpu.max")
    try:
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        quota_file = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
        if quota_file.is_file():
            quota_us = int(quota_file.read_text())
            period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
            return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None
    return None


def available_cpus() -> int:
    """Whole CPUs this process may use: the cgroup quota, the affinity mask and ``GALLEY_THREADS``, lowest wins."""
    override = os.environ.get("GALLEY_THREADS")
    if override:
        return max(1, int(override))
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_cpu_limit()
    return max(1, min(affinity, math.ceil(quota) if quota else affinity))


def cpu_supports_bf16() -> bool:
    """True where the CPU has native bf16 arithmetic (AVX512-BF16 or AMX), so bf16 autocast is faster."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass(frozen=True)
class Accelerator:
    """Where and how to run tensors, and why that was chosen."""

    device: torch.device
    autocast_dtype: torch.dtype | None
    channels_last: bool
    threads: int
    reason: str


CPU_PRECISION_VARIABLE = "GALLEY_CPU_PRECISION"
"""``auto`` (the default: bfloat16 where the CPU has it natively), ``float32`` or ``bfloat16``: forces
the CPU path, to compare the two on one machine or to rule precision out when results differ."""
CPU_PRECISIONS = ("auto", "float32", "bfloat16")


def cpu_precision_asked() -> str:
    """The CPU precision path asked for in the environment; a ValueError naming the variable when it is
    none of :data:`CPU_PRECISIONS`."""
    asked = os.environ.get(CPU_PRECISION_VARIABLE, "auto").strip().lower() or "auto"
    if asked not in CPU_PRECISIONS:
        raise ValueError(f"{CPU_PRECISION_VARIABLE}={asked!r}: expected one of {', '.join(CPU_PRECISIONS)}")
    return asked


def choose(prefer_gpu: bool = True) -> Accelerator:
    """The fastest setup this machine offers for convolutional networks (on a CPU, the path
    ``GALLEY_CPU_PRECISION`` forces, where it is set)."""
    import torch

    threads = available_cpus()
    if prefer_gpu and torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        return Accelerator(torch.device("cuda"), torch.float16, True, threads,
                           f"GPU {name}: float16 autocast (AMP) and channels_last")
    asked = cpu_precision_asked()
    if asked == "bfloat16":
        native = "native" if cpu_supports_bf16() else "emulated, so slower"
        return Accelerator(torch.device("cpu"), torch.bfloat16, True, threads,
                           f"CPU, {threads} threads: bfloat16 autocast ({native}) and channels_last, "
                           f"as {CPU_PRECISION_VARIABLE} asks")
    if asked == "float32":
        return Accelerator(torch.device("cpu"), None, True, threads,
                           f"CPU, {threads} threads: float32 and channels_last, as {CPU_PRECISION_VARIABLE} asks")
    if cpu_supports_bf16():
        return Accelerator(torch.device("cpu"), torch.bfloat16, True, threads,
                           f"CPU with native bf16, {threads} threads: bfloat16 autocast and channels_last "
                           "(about 3x faster than float32 here)")
    return Accelerator(torch.device("cpu"), None, True, threads,
                       f"CPU without native bf16, {threads} threads: float32 and channels_last "
                       "(bf16 would be emulated and slower)")
