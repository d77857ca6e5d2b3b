"""Inference runtimes, and picking the fastest one for this machine by measuring it.

Candidates: ONNX Runtime on the package's ONNX graph (exported at load time when the package has
none), PyTorch with bfloat16 autocast and channels_last on CPUs with native bf16 (AVX512-BF16,
AMX), and eager float32 PyTorch as the fallback that runs anything. On a small CPU without bf16,
ONNX Runtime is typically the fastest; with bf16, PyTorch bf16 often wins, by more when requests
are batched. ``auto`` times each candidate on this machine at load and keeps the fastest.
Threads are sized to the container's CPU limit.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from galley.model.hardware import available_cpus, cpu_supports_bf16
from galley.model.package import PackageConfig, export_onnx, load_network

log = logging.getLogger(__name__)


class Runtime(Protocol):
    """Runs a float32 NCHW batch and returns logits."""

    name: str
    threads: int

    def run(self, batch: np.ndarray) -> np.ndarray: ...


class OnnxRuntime:
    """ONNX Runtime on the CPU, one intra-op pool sized to the CPU limit."""

    name = "onnxruntime"

    def __init__(self, model: bytes | Path, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        source = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.threads = threads

    def run(self, batch: np.ndarray) -> np.ndarray:
        output: np.ndarray = self.session.run(None, {self.input_name: batch})[0]
        return output


class TorchRuntime:
    """Eager PyTorch, float32 or with bfloat16 autocast."""

    def __init__(self, network: torch.nn.Module, threads: int, bf16: bool = False):
        torch.set_num_threads(threads)
        self.network = network.eval().to(memory_format=torch.channels_last)
        self.threads = threads
        self.bf16 = bf16
        self.name = "pytorch-bf16" if bf16 else "pytorch"

    @torch.inference_mode()
    def run(self, batch: np.ndarray) -> np.ndarray:
        if torch.get_num_threads() != self.threads:  # the pool size is per calling thread
            torch.set_num_threads(self.threads)
        tensor = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            return self.network(tensor).float().numpy()


def _measure(runtime: Runtime, image_size: int, repeats: int = 3) -> float:
    """Median seconds of a batch-1 forward, after a warm-up."""
    sample = np.zeros((1, 3, image_size, image_size), dtype=np.float32)
    runtime.run(sample)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        runtime.run(sample)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


RUNTIMES = ("auto", "onnxruntime", "pytorch-bf16", "pytorch")


def _onnx(folder: Path, config: PackageConfig, threads: int) -> Runtime | None:
    try:
        onnx_file = folder / config.onnx if config.onnx else None
        if onnx_file is not None and onnx_file.is_file():
            return OnnxRuntime(onnx_file, threads)
        exported = export_onnx(load_network(folder, config), config.image_size)
        if exported is not None:
            log.info("the package has no ONNX graph; exported one at load time")
            return OnnxRuntime(exported, threads)
    except ImportError:
        log.warning("onnxruntime is not installed")
    except Exception as error:  # a graph ONNX Runtime cannot run: say so, use the others
        log.warning("ONNX Runtime could not load the model (%s)", error)
    return None


def choose_runtime(folder: Path, config: PackageConfig, prefer: str = "auto",
                   threads: int | None = None) -> Runtime:
    """The runtime for the package at ``folder``: ``prefer``, or with ``auto`` the fastest measured here."""
    if prefer not in RUNTIMES:
        raise ValueError(f"unknown runtime {prefer!r}; expected one of {', '.join(RUNTIMES)}")
    threads = threads or available_cpus()
    if prefer == "onnxruntime":
        runtime = _onnx(folder, config, threads)
        if runtime is None:
            raise RuntimeError("--runtime onnxruntime: ONNX Runtime cannot run this package (see above)")
        return runtime
    if prefer in ("pytorch", "pytorch-bf16"):
        return TorchRuntime(load_network(folder, config), threads, bf16=prefer == "pytorch-bf16")
    candidates: list[Runtime] = []
    onnx = _onnx(folder, config, threads)
    if onnx is not None:
        candidates.append(onnx)
    if cpu_supports_bf16() and not torch.cuda.is_available():
        candidates.append(TorchRuntime(load_network(folder, config), threads, bf16=True))
    if not candidates:
        return TorchRuntime(load_network(folder, config), threads)
    timed = sorted(((_measure(c, config.image_size), i, c) for i, c in enumerate(candidates)), key=lambda t: t[:2])
    log.info("runtime: measured %s; using %s",
             ", ".join(f"{c.name} {seconds * 1000:.1f} ms" for seconds, _, c in timed), timed[0][2].name)
    return timed[0][2]
