"""Turning the selected weights into the model package: evaluation numbers, the report, the ONNX
graphs (FP32, and INT8 when it keeps accuracy) and config.json, written last."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision.transforms.v2 import functional as tvf

from galley.model import package
from galley.model.preprocessing import Preprocessing
from galley.model.report import Mistake, render
from galley.trainer import images, quantize
from galley.trainer.evaluation import classification_metrics
from galley.trainer.progress import Reporter

CALIBRATION_IMAGES = 64
"""Training photos that calibrate the INT8 graph's activation ranges."""
MISTAKES_SHOWN = 8


@dataclass(frozen=True)
class Selection:
    """Which epoch's weights went into the package, and why."""

    epoch: int
    policy: str
    reason: str


@dataclass(frozen=True)
class Contents:
    """Everything the package is made from."""

    job_name: str
    algorithm: str
    dataset: str
    hyperparameters: dict[str, str]
    labels: list[str]
    preprocessing: Preprocessing
    history: list[dict[str, Any]]
    selection: Selection
    split: dict[str, Any]
    """Counts for config.json and the report: train/eval images, near-duplicate groups, skipped images."""


def _mistakes(decoded: images.DecodedSet, probabilities: np.ndarray, labels: list[str],
              preprocessing: Preprocessing) -> list[Mistake]:
    targets = np.asarray(decoded.targets, dtype=np.int64)
    predictions = probabilities.argmax(1)
    shown = []
    for i in np.flatnonzero(predictions != targets)[:MISTAKES_SHOWN]:
        ranked = sorted(zip(labels, probabilities[i].tolist(), strict=True), key=lambda p: -p[1])
        cached = decoded.images
        tensor = cached[i] if cached is not None else images.load_one(decoded.samples[i], preprocessing)
        shown.append(Mistake(tvf.to_pil_image(tensor), labels[targets[i]], ranked))
    return shown


def write(model_uri: str, network: nn.Module, contents: Contents, *, eval_set: images.DecodedSet,
          probabilities: np.ndarray, calibration: list[np.ndarray], eval_batches: list[np.ndarray],
          reporter: Reporter) -> dict[str, Any]:
    """Write the package of ``network`` to ``model_uri``; returns metrics.json's content."""
    targets = np.asarray(eval_set.targets, dtype=np.int64)
    predictions = probabilities.argmax(1) if len(probabilities) else np.zeros(0, dtype=np.int64)
    metrics = classification_metrics(contents.labels, targets, predictions)
    mistakes = _mistakes(eval_set, probabilities, contents.labels, contents.preprocessing)
    network = network.float().cpu().to(memory_format=torch.contiguous_format).eval()
    onnx = package.export_onnx(network, contents.preprocessing.image_size)
    reporter.say("ONNX export: %s", "written" if onnx else "not possible here; serving falls back to PyTorch")
    quantized = None
    if onnx:
        quantized = quantize.quantize(onnx, calibration, eval_batches, targets)
        reporter.say("INT8: %s", quantized.reason)
    quantization = quantized.record() if quantized is not None else {}
    selection = {"selected_epoch": contents.selection.epoch, "selection": contents.selection.policy,
                 "selection_reason": contents.selection.reason}
    config = package.PackageConfig(
        name=contents.job_name, algorithm=contents.algorithm, labels=contents.labels,
        image_size=contents.preprocessing.image_size, resize_size=contents.preprocessing.resize_size,
        metrics={"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]},
        onnx=package.ONNX if onnx else None, report=package.REPORT,
        onnx_int8=package.ONNX_INT8 if quantized is not None and quantized.kept else None,
        quantization=quantization,
        training={"job": contents.job_name, "dataset": contents.dataset, "epochs": len(contents.history),
                  **selection, "hyperparameters": contents.hyperparameters, **contents.split},
    )
    report = render(contents.job_name, contents.history, metrics, mistakes, quantization or None,
                    selection=contents.selection.reason, split=contents.split)
    files = {package.METRICS: (json.dumps(metrics, ensure_ascii=False, indent=2) + "\n").encode(),
             package.REPORT: report.encode()}
    if onnx:
        files[package.ONNX] = onnx
    if quantized is not None and quantized.graph is not None:
        files[package.ONNX_INT8] = quantized.graph
    package.write_package(model_uri, config, network, files)
    return metrics
