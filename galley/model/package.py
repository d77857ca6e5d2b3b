"""The model package: what the trainer writes and the predictor reads.

```
<output>/model/
  model.safetensors   weights (tensors only: no pickled code can run when it is loaded)
  model.onnx          the same network exported for ONNX Runtime, where export worked
  metrics.json        accuracy, per-class precision/recall/F1/support, confusion matrix
  report.html         the evaluation report
  config.json         written last: its presence means the package is complete
```
``config.json`` is the pointer a reader looks for; it is uploaded after the payload, so a
reader never sees half a package.

Reading a package (:func:`fetch`, :func:`preprocessing_of`) needs no torch, so the predictor
image has none; writing one, loading its weights into a network and exporting ONNX import torch
when called.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from galley import storage
from galley.model.config import (  # noqa: F401  (the package format, re-exported for its writers and readers)
    CONFIG,
    FORMAT_VERSION,
    METRICS,
    ONNX,
    ONNX_INT8,
    REPORT,
    WEIGHTS,
    PackageConfig,
    PackageError,
    read_config,
)
from galley.model.preprocessing import Preprocessing

if TYPE_CHECKING:
    from torch import nn


def preprocessing_of(config: PackageConfig) -> Preprocessing:
    """The preprocessing a package was trained with."""
    return Preprocessing(config.image_size, config.resize_size, tuple(config.mean), tuple(config.std))  # type: ignore[arg-type]


def write_package(uri: str, config: PackageConfig, network: nn.Module, files: dict[str, bytes]) -> None:
    """Write weights and ``files`` first, then config.json, so readers never see half a package."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in network.state_dict().items()}
    with tempfile.TemporaryDirectory() as scratch:
        weights = Path(scratch) / WEIGHTS
        save_file(state, str(weights))
        storage.write_bytes(storage.join(uri, WEIGHTS), weights.read_bytes())
    for name, data in files.items():
        storage.write_bytes(storage.join(uri, name), data)
    storage.write_text(storage.join(uri, CONFIG), config.to_json())


def fetch(uri: str, destination: Path) -> Path:
    """A local folder holding the package at ``uri`` (downloaded when it is in S3)."""
    read_config(uri)
    return storage.download_tree(uri, destination)


def load_network(folder: Path, config: PackageConfig) -> nn.Module:
    """Build the network from config.json and load its weights safely (safetensors)."""
    from safetensors.torch import load_file

    from galley.model.architectures import build

    network = build(config.algorithm, len(config.labels))
    weights = folder / config.weights
    if not weights.is_file():
        raise PackageError(f"{weights}: weights file missing from the package")
    try:
        state = load_file(str(weights))
    except Exception as error:
        raise PackageError(f"{weights}: cannot read weights ({error})") from None
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise PackageError(f"{weights}: weights do not fit {config.algorithm} with {len(config.labels)} classes: "
                           f"{str(error).splitlines()[0]}") from None
    return network.eval()


def export_onnx(network: nn.Module, image_size: int) -> bytes | None:
    """The network as ONNX bytes (dynamic batch), or None where export is not possible here."""
    import torch

    example = torch.zeros(1, 3, image_size, image_size)
    try:
        # The TorchScript-based exporter handles these CNNs fully and fast; its deprecation notice is noise here.
        with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path = Path(scratch) / ONNX
            torch.onnx.export(
                network.eval(), (example,), str(path), input_names=["input"], output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False,
            )
            return path.read_bytes()
    except Exception:
        return None
