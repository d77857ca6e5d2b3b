"""What a model package's ``config.json`` says, read and checked without torch.

Everything that only needs to know what a package is (the operator checking a Model, a status
line) reads it through this module, so those processes never load torch; building networks and
loading weights stay in :mod:`galley.model.package`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from galley import __version__, storage
from galley.control.reasons import PACKAGE_INVALID
from galley.storage.uris import inside, name_problem

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
ONNX = "model.onnx"
ONNX_INT8 = "model.int8.onnx"
METRICS = "metrics.json"
REPORT = "report.html"
REPORT_POLICY = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"
"""The Content-Security-Policy the report is served with wherever it is served (the predictor, the
console): no scripts, no forms, no access to the origin it is shown on. Whoever writes a package
writes its report."""
FORMAT_VERSION = 1


class PackageError(ValueError):
    """A package that is missing or cannot be used, with what is wrong."""


class PackageUnreachable(PackageError):
    """The store holding the package did not answer (unreachable, timed out, credentials refused):
    whether the package is there is unknown, and reading it again later may succeed."""


class PackageInvalid(PackageError):
    """A package that breaks the format in a way no second read can mend: above all, one whose
    config.json names a file outside the package (``/etc/passwd``, ``../x``, a symlink out)."""

    reason = PACKAGE_INVALID


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
        except RecursionError:
            raise PackageError(f"{where}: nests arrays or objects too deeply to be read") from None
        except ValueError as error:  # a number of more digits than Python converts
            raise PackageError(f"{where}: {str(error)[:200]}") from None
        if not isinstance(data, dict):
            raise PackageError(f"{where}: expected a JSON object")
        missing = [k for k in ("name", "algorithm", "labels") if k not in data]
        if missing:
            raise PackageError(f"{where}: missing {', '.join(missing)}")
        if not isinstance(data.get("format_version", FORMAT_VERSION), int):
            raise PackageError(f"{where}: format_version must be a whole number")
        if data.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
            raise PackageError(f"{where}: format_version {data['format_version']} is newer than this Galley reads")
        labels = data["labels"]
        if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) for x in labels):
            raise PackageError(f"{where}: labels must be a list of at least two strings")
        known = {f for f in cls.__dataclass_fields__}
        config = cls(**{k: v for k, v in data.items() if k in known})
        check_file_names(config, where)
        return config

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=2) + "\n"


FILE_FIELDS = ("weights", "onnx", "onnx_int8", "report")
"""The fields of config.json that name a file of the package (besides the keys of ``files``)."""


def _named_files(config: PackageConfig, where: str) -> Iterator[tuple[str, object]]:
    """Every (field, name) by which config.json names a file of the package."""
    for name in FILE_FIELDS:
        value = getattr(config, name)
        if value is not None or name == "weights":  # the weights are never optional
            yield name, value
    if not isinstance(config.files, dict):
        raise PackageInvalid(f"{where} field 'files': expected an object of file names to SHA-256 digests")
    for name in config.files:
        yield "files", name


def _refuse(where: str, field_name: str, name: object, problem: str) -> PackageInvalid:
    return PackageInvalid(f"{where} field {field_name!r}: {name!r} is not a plain relative file name inside the "
                          f"package ({problem})")


def check_name(name: object, field_name: str, where: str = CONFIG) -> str:
    """``name`` (from config.json's ``field_name``) when it is a plain relative file name, else PackageInvalid."""
    problem = name_problem(name)
    if problem is not None:
        raise _refuse(where, field_name, name, problem)
    assert isinstance(name, str)
    return name


def package_file(folder: Path, name: object, field_name: str, where: str = CONFIG) -> Path:
    """The file that ``name`` (from config.json's ``field_name``) opens in the package at ``folder``.

    The one rule for every name a package gives, on the trainer's side and the predictor's: a
    plain relative name, and one that no symlink leads out of ``folder``. The path returned is
    the resolved one, the file that will actually be opened; PackageInvalid when there is none.
    """
    path = inside(folder, check_name(name, field_name, where))
    if path is None:
        raise _refuse(where, field_name, name, "it resolves through a symlink to outside the package folder "
                                               "(or through a symlink loop)")
    return path


def check_file_names(config: PackageConfig, where: str = CONFIG, folder: Path | None = None) -> None:
    """Refuse (PackageInvalid) a config.json that names any file outside its package: checked
    when a package is written and whenever one is read, so a hostile package is refused before any
    of its names is opened."""
    for field_name, name in _named_files(config, where):
        if folder is None:
            check_name(name, field_name, where)
        else:
            package_file(folder, name, field_name, where)


def local_folder(uri: str) -> Path | None:
    """The folder of a package on this machine's file system; None for one in S3."""
    return None if storage.is_s3(uri) else Path(uri.removeprefix("file://"))


def read_config(uri: str) -> PackageConfig:
    """Read and check ``<uri>/config.json`` (for a local package, also that no name leaves its folder)."""
    where = storage.join(uri, CONFIG)
    try:
        text = storage.read_text(where)
    except storage.StorageUnavailable as error:
        raise PackageUnreachable(f"cannot read the model package at {uri} now: {error}") from None
    except storage.StorageError as error:
        raise PackageError(f"no model package at {uri}: {error}") from None
    config = PackageConfig.from_json(text, where)
    check_file_names(config, where, local_folder(uri))
    return config
