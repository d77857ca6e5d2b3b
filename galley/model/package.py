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
reader never sees half a package. It also lists the SHA-256 of every other file: a package
being rewritten in place (new weights uploaded, the new config.json not yet) does not match, and
:func:`fetch` waits for it to settle instead of pairing the old config.json with new weights.

Reading a package (:func:`fetch`, :func:`preprocessing_of`) needs no torch, so the predictor
image has none; writing one, loading its weights into a network and exporting ONNX import torch
when called.
"""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
import time
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
    PackageInvalid,
    PackageUnreachable,
    check_file_names,
    local_folder,
    package_file,
    read_config,
)
from galley.model.preprocessing import Preprocessing
from galley.storage.uris import UnsafeName

if TYPE_CHECKING:
    from torch import nn


def preprocessing_of(config: PackageConfig) -> Preprocessing:
    """The preprocessing a package was trained with."""
    return Preprocessing(config.image_size, config.resize_size, tuple(config.mean), tuple(config.std))  # type: ignore[arg-type]


def write_package(uri: str, config: PackageConfig, network: nn.Module, files: dict[str, bytes]) -> None:
    """Write weights and ``files`` first, then config.json with their digests, so readers never
    see half a package nor a mix of two. A name that would leave the package is refused before
    anything is written: readers refuse such a package, so writing one would only waste a run."""
    from safetensors.torch import save_file

    where = storage.join(uri, CONFIG)
    config = dataclasses.replace(config, files=dict.fromkeys([WEIGHTS, *files], ""))
    check_file_names(config, where, local_folder(uri))
    state = {k: v.detach().contiguous().cpu() for k, v in network.state_dict().items()}
    with tempfile.TemporaryDirectory() as scratch:
        weights = Path(scratch) / WEIGHTS
        save_file(state, str(weights))
        payload = {WEIGHTS: weights.read_bytes(), **files}
    for name, data in payload.items():
        storage.write_bytes(storage.join(uri, name), data)
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in payload.items()}
    config = dataclasses.replace(config, files=digests)
    storage.write_text(where, config.to_json())


def _mismatch(folder: Path, config: PackageConfig) -> str | None:
    """The first file whose content is not the one config.json names, or None."""
    for name, digest in config.files.items():
        path = package_file(folder, name, "files")
        if not path.is_file():
            return f"{name} is missing"
        if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            return f"{name} does not match config.json"
    return None


def fetch(uri: str, destination: Path, *, attempts: int = 5, wait: float = 2.0) -> tuple[PackageConfig, Path]:
    """config.json and a local folder holding the package at ``uri`` (downloaded when it is in S3),
    checked against each other; a package caught mid-rewrite is fetched again, a few times. A
    package that names a file outside itself, or an S3 key that would land outside ``destination``,
    is refused (PackageInvalid) before any such file is opened or written."""
    problem = ""
    for attempt in range(attempts):
        try:
            folder = storage.download_tree(uri, destination)
        except UnsafeName as error:
            raise PackageInvalid(f"the model package at {uri} holds a file outside the package: {error}") from None
        except storage.StorageError as error:
            read_config(uri)  # says whether there is no package or the store did not answer
            raise PackageError(f"cannot download the model package at {uri}: {error}") from None
        if not (folder / CONFIG).is_file():
            read_config(uri)  # no package there: the same clear error a reader of config.json gets
        where = storage.join(uri, CONFIG)
        config = PackageConfig.from_json((folder / CONFIG).read_text(encoding="utf-8"), where)
        check_file_names(config, where, folder)
        mismatch = _mismatch(folder, config)
        if mismatch is None:
            return config, folder
        problem = mismatch
        if attempt + 1 < attempts:
            time.sleep(wait)
    raise PackageError(f"the package at {uri} is being rewritten or is damaged: {problem} "
                       f"(tried {attempts} times)")


def load_network(folder: Path, config: PackageConfig) -> nn.Module:
    """Build the network from config.json and load its weights safely (safetensors)."""
    from safetensors.torch import load_file

    from galley.model.architectures import build

    network = build(config.algorithm, len(config.labels))
    weights = package_file(folder, config.weights, "weights")
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
