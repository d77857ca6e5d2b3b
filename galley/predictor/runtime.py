"""Inference runtimes, chosen by a rule rather than by a timing taken at load.

ONNX Runtime on the package's ONNX graph is the serving runtime: it is all the predictor image
carries (no torch), and on a small CPU it is the fastest of those measured in
``benchmarks/serve_vs_baselines.py``. Where the package holds an INT8 graph (kept by the trainer
only when it matched FP32's accuracy), ``precision: auto`` serves it; ``fp32`` and ``int8`` force
one or the other. PyTorch (float32, or bfloat16 autocast on CPUs with native
bf16) stays available where torch is installed, as in the embedded mode: it serves a package
without an ONNX graph, or when asked for by name. Threads are sized to the container's CPU limit.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np

from galley.model.config import package_file
from galley.model.hardware import available_cpus, cpu_supports_bf16
from galley.model.package import PackageConfig

log = logging.getLogger(__name__)


class Runtime(Protocol):
    """Runs a float32 NCHW batch and returns logits."""

    name: str
    threads: int

    def run(self, batch: np.ndarray) -> np.ndarray: ...


class OnnxRuntime:
    """ONNX Runtime on the CPU, one intra-op pool sized to the CPU limit."""

    def __init__(self, model: bytes | Path, threads: int, name: str = "onnxruntime"):
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
        self.name = name

    def run(self, batch: np.ndarray) -> np.ndarray:
        output: np.ndarray = self.session.run(None, {self.input_name: batch})[0]
        return output


RUNTIMES = ("auto", "onnxruntime", "pytorch-bf16", "pytorch")
PRECISIONS = ("auto", "fp32", "int8")


def _torch_runtime(folder: Path, config: PackageConfig, threads: int, bf16: bool) -> Runtime:
    try:
        from galley.predictor.torch_runtime import TorchRuntime
    except ImportError:
        raise RuntimeError("PyTorch is not installed here (the predictor image serves ONNX graphs only); "
                           "install galley[model] or serve a package that holds model.onnx") from None
    from galley.model.package import load_network

    return TorchRuntime(load_network(folder, config), threads, bf16=bf16)


def _file(folder: Path, name: str | None, field_name: str) -> Path | None:
    """The package's file ``name`` (config.json's ``field_name``), checked to lie inside the package."""
    if not name:
        return None
    path = package_file(folder, name, field_name)
    return path if path.is_file() else None


def _int8_graph(folder: Path, config: PackageConfig, precision: str) -> Path | None:
    graph = _file(folder, config.onnx_int8, "onnx_int8") if precision in ("auto", "int8") else None
    if graph is None and precision == "int8":
        why = config.quantization.get("reason") or "it was trained before INT8 existed"
        raise RuntimeError(f"--precision int8: the package has no INT8 graph ({why})")
    return graph


def choose_runtime(folder: Path, config: PackageConfig, prefer: str = "auto",
                   threads: int | None = None, precision: str = "auto") -> Runtime:
    """The runtime for the package at ``folder``: ``prefer``, or with ``auto`` ONNX Runtime on the
    package's graph (INT8 where the package has one and ``precision`` allows), falling back to
    PyTorch (bf16 where the CPU has it) for a package without a graph."""
    if prefer not in RUNTIMES:
        raise ValueError(f"unknown runtime {prefer!r}; expected one of {', '.join(RUNTIMES)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    threads = threads or available_cpus()
    if prefer in ("pytorch", "pytorch-bf16"):
        if precision == "int8":
            raise ValueError("--precision int8 runs on ONNX Runtime only; use --runtime auto or onnxruntime")
        return _torch_runtime(folder, config, threads, bf16=prefer == "pytorch-bf16")
    int8 = _int8_graph(folder, config, precision)
    if int8 is not None:
        return OnnxRuntime(int8, threads, name="onnxruntime-int8")
    graph = _file(folder, config.onnx, "onnx")
    if graph is not None:
        return OnnxRuntime(graph, threads)
    if prefer == "onnxruntime":
        from galley.model.package import export_onnx, load_network

        exported = export_onnx(load_network(folder, config), config.image_size)
        if exported is None:
            raise RuntimeError("--runtime onnxruntime: the package has no ONNX graph and none could be exported")
        log.info("the package has no ONNX graph; exported one at load time")
        return OnnxRuntime(exported, threads)
    log.info("the package has no ONNX graph; serving it with PyTorch")
    return _torch_runtime(folder, config, threads, bf16=cpu_supports_bf16())
