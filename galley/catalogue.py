"""The preset algorithms as a user picks one: the network, its input, whether ImageNet weights are
here, and every hyperparameter with its default, allowed values and meaning.

``galley algorithms`` and the console's Algorithms page both show this. It is generated from the
tables that check a TrainingJob (``AlgorithmName`` and :data:`galley.api.hyperparameters.HYPERPARAMETERS`)
and the lookup a trainer starting here would make (:mod:`galley.trainer.pretrained`), so it says what
Galley does, never a copy that can drift. It imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, get_args

from galley.api import hyperparameters as hp
from galley.api.resources import AlgorithmName
from galley.model.preprocessing import Preprocessing
from galley.trainer import pretrained


@dataclass(frozen=True)
class Network:
    """What a preset algorithm's name stands for (:mod:`galley.model.architectures` builds it)."""

    title: str
    source: str
    """The torchvision builder the trainer calls, with the head replaced by one sized to the classes."""
    parameters: int
    """Trainable parameters with ImageNet's 1,000-class head (a new head changes the last layer only)."""
    features: int
    """The width of the features the new head reads."""
    summary: str


NETWORKS: dict[str, Network] = {
    "resnet50": Network("ResNet-50", "torchvision.models.resnet50", 25_557_032, 2048,
                        "50-layer residual network (torchvision's v1.5), the preset closest to the reference "
                        "case's ResNet_v1_50 and the most accurate"),
    "resnet18": Network("ResNet-18", "torchvision.models.resnet18", 11_689_512, 512,
                        "18-layer residual network: under half of ResNet-50's compute, quick to fine-tune"),
    "mobilenet_v2": Network("MobileNetV2", "torchvision.models.mobilenet_v2", 3_504_872, 1280,
                            "inverted-residual network for CPUs: the smallest and fastest to serve; its ImageNet "
                            "weights come with Galley's install"),
}
"""One entry per name the TrainingJob schema accepts (a test holds them to ``AlgorithmName`` and to
the networks torchvision builds)."""


@dataclass(frozen=True)
class Algorithm:
    """One preset algorithm as the catalogue shows it."""

    name: str
    network: Network
    input_size: int
    """The square crop the network sees by default (hyperparameter ``image_size``)."""
    resize_size: int
    """The shorter side a photo is resized to before the centre crop, in evaluation and serving."""
    weights: pretrained.Lookup
    hyperparameters: tuple[hp.Hyperparameter, ...]


def algorithms() -> list[Algorithm]:
    """Every preset algorithm, in the schema's order, with this machine's ImageNet weights looked up."""
    size = int(hp.BY_NAME["image_size"].default)
    resize = Preprocessing.for_size(size).resize_size
    return [Algorithm(name, NETWORKS[name], size, resize, pretrained.locate(name), hp.HYPERPARAMETERS)
            for name in get_args(AlgorithmName)]


def hyperparameter_json(h: hp.Hyperparameter) -> dict[str, Any]:
    return {"name": h.name, "default": h.default, "allowed": h.allowed.to_json(), "description": h.description}


def to_json(found: list[Algorithm]) -> dict[str, Any]:
    """What ``galley algorithms -o json`` prints: everything the text shows, for scripts."""
    return {"algorithms": [{
        "name": a.name,
        "network": a.network.title,
        "source": a.network.source,
        "summary": a.network.summary,
        "parameters": a.network.parameters,
        "featureWidth": a.network.features,
        "inputSize": a.input_size,
        "resizeSize": a.resize_size,
        "imagenetWeights": {"found": a.weights.path is not None,
                            "path": None if a.weights.path is None else str(a.weights.path),
                            "looked": list(a.weights.looked)},
        "hyperparameters": [hyperparameter_json(h) for h in a.hyperparameters],
    } for a in found]}


def weights_text(algorithm: Algorithm) -> str:
    if algorithm.weights.path is not None:
        return f"found: {algorithm.weights.path}"
    return "not found here"


def text(found: list[Algorithm]) -> str:
    """The catalogue as ``galley algorithms`` prints it: the algorithms, then the hyperparameters they take."""
    from galley.commands import table

    rows = [["ALGORITHM", "NETWORK", "PARAMETERS", "INPUT", "IMAGENET WEIGHTS"]]
    rows += [[a.name, a.network.title, f"{a.network.parameters / 1e6:.1f} M",
              f"{a.input_size}x{a.input_size} (resize {a.resize_size})", weights_text(a)] for a in found]
    lines = [table(rows), ""]
    lines += [f"{a.name}: {a.network.summary}; {a.network.source}, {a.network.features}-wide features "
              "into a new head" for a in found]
    missing = [a for a in found if a.weights.path is None]
    if missing:
        lines.append("")
        lines += [f"{a.name}: no ImageNet weights here (looked in {', '.join(a.weights.looked)}). Put torchvision's "
                  "file in torch's cache, set spec.algorithm.weights, or set spec.algorithm.pretrained: false"
                  for a in missing]
    for group in dict.fromkeys(a.hyperparameters for a in found):
        names = ", ".join(a.name for a in found if a.hyperparameters == group)
        lines += ["", f"Hyperparameters of {names} (spec.hyperparameters, strings as in YAML):"]
        for h in group:
            lines += [f"  {h.name} (default {h.default!r})", f"      allowed: {h.allowed}", f"      {h.description}"]
    return "\n".join(lines)
