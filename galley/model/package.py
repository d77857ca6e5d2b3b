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
"""

from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from galley import __version__, storage
from galley.model.architectures import build
from galley.model.preprocessing import Preprocessing

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
ONNX = "model.onnx"
METRICS = "metrics.json"
REPORT = "report.html"
FORMAT_VERSION = 1


class PackageError(ValueError):
    """A package that is missing or cannot be used, with what is wrong."""


@dataclass
class PackageConfig:
    """The contents of config.json."""

    name: str
    algorithm: str
    labels: list[str]
    image_size: int = 224
    resize_size: int = 256
    mean: list[float] = field(default_factory=lambda: list(Preprocessing().mean))
    std: list[float] = field(default_factory=lambda: list(Preprocessing().std))
    metrics: dict[str, float] = field(default_factory=dict)
    version: str = "0.0.1"
    galley_version: str = __version__
    format_version: int = FORMAT_VERSION
    weights: str = WEIGHTS
    onnx: str | None = None
    report: str | None = None
    training: dict[str, Any] = field(default_factory=dict)

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(self.image_size, self.resize_size, tuple(self.mean), tuple(self.std))  # type: ignore[arg-type]

    @classmethod
    def from_json(cls, text: str, where: str = CONFIG) -> PackageConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise PackageError(f"{where}: not valid JSON ({error})") from None
        if not isinstance(data, dict):
            raise PackageError(f"{where}: expected a JSON object")
        missing = [k for k in ("name", "algorithm", "labels") if k not in data]
        if missing:
            raise PackageError(f"{where}: missing {', '.join(missing)}")
        if data.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
            raise PackageError(f"{where}: format_version {data['format_version']} is newer than this Galley reads")
        labels = data["labels"]
        if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) for x in labels):
            raise PackageError(f"{where}: labels must be a list of at least two strings")
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=2) + "\n"


def read_config(uri: str) -> PackageConfig:
    """Read and check ``<uri>/config.json``."""
    where = storage.join(uri, CONFIG)
    try:
        text = storage.read_text(where)
    except storage.StorageError as error:
        raise PackageError(f"no model package at {uri}: {error}") from None
    return PackageConfig.from_json(text, where)


def write_package(uri: str, config: PackageConfig, network: nn.Module, files: dict[str, bytes]) -> None:
    """Write weights and ``files`` first, then config.json, so readers never see half a package."""
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
