"""Networks by name, with the classifier head sized to the data set's classes."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision import models

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "resnet50": models.resnet50,
    "resnet18": models.resnet18,
    "mobilenet_v2": models.mobilenet_v2,
}


def build(name: str, num_classes: int) -> nn.Module:
    """A network of architecture ``name`` with a ``num_classes``-way head, randomly initialised."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown algorithm {name!r}; known: {', '.join(ARCHITECTURES)}")
    network = ARCHITECTURES[name](weights=None)
    replace_head(network, num_classes)
    return network


def head(network: nn.Module) -> nn.Linear:
    """The final linear layer: ``fc`` on ResNets, ``classifier[-1]`` on MobileNet."""
    if isinstance(getattr(network, "fc", None), nn.Linear):
        return network.fc  # type: ignore[return-value]
    classifier = getattr(network, "classifier", None)
    if isinstance(classifier, nn.Sequential) and isinstance(classifier[-1], nn.Linear):
        return classifier[-1]
    raise ValueError(f"{type(network).__name__} has no recognisable classifier head")


def replace_head(network: nn.Module, num_classes: int) -> None:
    old = head(network)
    new = nn.Linear(old.in_features, num_classes)
    if isinstance(getattr(network, "fc", None), nn.Linear):
        network.fc = new
    else:
        classifier: nn.Sequential = network.classifier  # type: ignore[assignment]
        classifier[-1] = new


def feature_maps(network: nn.Module) -> nn.Module:
    """The convolutional body: photos in, the last feature maps ``(N, C, H, W)`` out.

    Their spatial mean is what the head reads (the networks' own average pooling; MobileNet's
    dropout before the head is the identity in evaluation), so one pass gives both the head's
    input and the maps that near-duplicate search pools differently.
    """
    if isinstance(getattr(network, "fc", None), nn.Linear):
        return nn.Sequential(*list(network.children())[:-2])
    body: nn.Module = network.features  # type: ignore[assignment]
    return body


def load_backbone_weights(network: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Load an ImageNet state_dict into everything but the head; return the keys it did not have."""
    head_keys = {k for k in network.state_dict() if k.startswith(("fc.", "classifier."))
                 and network.state_dict()[k].shape != state.get(k, torch.empty(0)).shape}
    wanted = {k: v for k, v in state.items() if k not in head_keys and k in network.state_dict()}
    missing = [k for k in network.state_dict() if k not in wanted and k not in head_keys]
    network.load_state_dict(wanted, strict=False)
    return missing
