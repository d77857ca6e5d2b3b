"""What a model package's ``config.json`` says, read and checked without torch.

Everything that only needs to know what a package is (the operator checking a Model, a status
line) reads it through this module, so those processes never load torch; building networks and
loading weights stay in :mod:`galley.model.package`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from galley import __version__, storage

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
ONNX = "model.onnx"
ONNX_INT8 = "model.int8.onnx"
METRICS = "metrics.json"
REPORT = "report.html"
FORMAT_VERSION = 1


class PackageError(ValueError):
    """A package that is missing or cannot be used, with what is wrong."""


class PackageUnreachable(PackageError):
    """The store holding the package did not answer (unreachable, timed out, credentials refused):
    whether the package is there is unknown, and reading it again later may succeed."""


@dataclass
class PackageConfig:
    """The contents of config.json."""

    name: str
    algorithm: str
    labels: list[str]
    image_size: int = 224
    resize_size: int = 256
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    metrics: dict[str, float] = field(default_factory=dict)
    version: str = "0.0.1"
    galley_version: str = __version__
    format_version: int = FORMAT_VERSION
    weights: str = WEIGHTS
    onnx: str | None = None
    onnx_int8: str | None = None
    """A statically quantized graph, present only when it kept accuracy within the tolerance."""
    quantization: dict[str, Any] = field(default_factory=dict)
    """FP32 and INT8 accuracy on the evaluation split, the tolerance, and whether INT8 was kept."""
    report: str | None = None
    training: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    """SHA-256 of every other file of the package, so that a reader can tell a package being
    rewritten (this config.json with another run's weights) from a whole one."""

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
    except storage.StorageUnavailable as error:
        raise PackageUnreachable(f"cannot read the model package at {uri} now: {error}") from None
    except storage.StorageError as error:
        raise PackageError(f"no model package at {uri}: {error}") from None
    return PackageConfig.from_json(text, where)
