"""INT8 for the predictor: a statically quantized ONNX graph, kept only when it keeps accuracy.

The FP32 graph is quantized with ONNX Runtime's static quantization (QDQ, per-channel int8
weights, uint8 activations calibrated on training photos), then both graphs are scored on the
evaluation split with ONNX Runtime itself, the runtime that serves them. The INT8 graph goes into
the package only when its accuracy is within ``tolerance`` of FP32's; either way both accuracies
and the decision are recorded.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

TOLERANCE = 0.01
"""INT8 is kept when its evaluation accuracy is at most this far below FP32's (1 point)."""


@dataclass(frozen=True)
class Quantized:
    """The outcome: the INT8 graph (None when refused or impossible) and what was measured."""

    graph: bytes | None
    fp32_accuracy: float | None
    int8_accuracy: float | None
    tolerance: float
    kept: bool
    reason: str

    def record(self) -> dict[str, object]:
        """What config.json says about it."""
        return {k: v for k, v in asdict(self).items() if k != "graph"}


def _session(graph: bytes) -> object:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def accuracy(graph: bytes, batches: Sequence[np.ndarray], targets: np.ndarray) -> float:
    """Top-1 accuracy of an ONNX graph on float32 NCHW ``batches`` in order."""
    session = _session(graph)
    name = session.get_inputs()[0].name  # type: ignore[attr-defined]
    predictions = np.concatenate([session.run(None, {name: b})[0].argmax(1) for b in batches])  # type: ignore[attr-defined]
    return float((predictions == targets).mean()) if len(targets) else 0.0


def int8_graph(fp32: bytes, calibration: Sequence[np.ndarray]) -> bytes:
    """``fp32`` statically quantized, activation ranges calibrated on ``calibration`` batches."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Photos(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches: Iterator[np.ndarray] = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"input": batch}

    with tempfile.TemporaryDirectory() as scratch:
        source, prepared, output = (Path(scratch) / n for n in ("fp32.onnx", "prepared.onnx", "int8.onnx"))
        source.write_bytes(fp32)
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(output), Photos(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        return output.read_bytes()


def quantize(fp32: bytes, calibration: Sequence[np.ndarray], eval_batches: Sequence[np.ndarray],
             eval_targets: np.ndarray, tolerance: float = TOLERANCE) -> Quantized:
    """Quantize ``fp32`` on ``calibration`` batches and keep it if the evaluation split allows."""
    if not len(eval_targets):
        return Quantized(None, None, None, tolerance, False, "no evaluation images to check INT8 against")
    try:
        int8 = int8_graph(fp32, calibration)
        fp32_accuracy = accuracy(fp32, eval_batches, eval_targets)
        int8_accuracy = accuracy(int8, eval_batches, eval_targets)
    except ImportError:
        return Quantized(None, None, None, tolerance, False, "onnxruntime is not installed in the trainer")
    except Exception as error:  # an operator ONNX Runtime cannot quantize: FP32 serves, and the log says why
        log.warning("INT8 quantization failed: %s", error)
        return Quantized(None, None, None, tolerance, False, f"quantization failed: {error}")
    kept = int8_accuracy >= fp32_accuracy - tolerance
    verdict = "kept: at most" if kept else "refused: more than"
    reason = (f"INT8 accuracy {int8_accuracy:.4f} against FP32's {fp32_accuracy:.4f} on the evaluation split; "
              f"{verdict} {tolerance:.2f} below")
    return Quantized(int8 if kept else None, fp32_accuracy, int8_accuracy, tolerance, kept, reason)
