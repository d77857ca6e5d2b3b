"""The CPU precision paths, each forced on this machine: an AVX2-only CPU trains in float32 and an
AVX-512 one in bfloat16, and both must give a package that serves photos of new objects well.

The warm-up head is a converged linear probe (galley.trainer.probe): before it, a few Adam steps
left the head where the last step put it, and the tests' accuracy moved with the precision."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from galley.api.resources import TrainingJob
from galley.model import hardware
from galley.trainer import probe
from galley.trainer.engine import train


def _train(output: Path, food_photos: Any, weights: str) -> dict[str, Any]:
    job = TrainingJob.model_validate({
        "apiVersion": "galley.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "precision"},
        "spec": {"algorithm": {"name": "mobilenet_v2", "weights": weights},
                 "dataset": {"uri": str(food_photos.manifest)}, "output": {"uri": str(output)},
                 "hyperparameters": {"learning_rate_strategy": "1:0.001", "image_size": "128"}},
    })
    result = train(job)
    log = (output / "logs" / "training.log").read_text(encoding="utf-8")
    return {"accuracy": result.metrics["accuracy"], "log": log}


def test_float32_and_bfloat16_paths_each_train_a_package_above_twice_chance(
        tmp_path: Path, food_photos: Any, mobilenet_weights: str, monkeypatch: pytest.MonkeyPatch) -> None:
    found = {}
    for precision in ("float32", "bfloat16"):
        monkeypatch.setenv(hardware.CPU_PRECISION_VARIABLE, precision)
        found[precision] = _train(tmp_path / precision, food_photos, mobilenet_weights)
        hardware_line = next(line for line in found[precision]["log"].splitlines() if "hardware:" in line)
        assert f"{precision} " in hardware_line and "GALLEY_CPU_PRECISION asks" in hardware_line, hardware_line
        # Accuracy on the evaluation photos: the manifest puts every photo of an object on one side.
        assert found[precision]["accuracy"] >= 0.5, (precision, found[precision]["accuracy"])
    assert abs(found["float32"]["accuracy"] - found["bfloat16"]["accuracy"]) <= 0.15, \
        {k: v["accuracy"] for k, v in found.items()}


def test_an_unknown_precision_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(hardware.CPU_PRECISION_VARIABLE, "fp8")
    with pytest.raises(ValueError, match="GALLEY_CPU_PRECISION='fp8': expected one of auto, float32, bfloat16"):
        hardware.choose(prefer_gpu=False)


def _clusters(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Four overlapping clusters of 64-wide non-negative features (as pooled ReLU maps are)."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.rand(4, 64, generator=generator) * 3
    targets = torch.arange(4).repeat_interleave(30)
    features = (centres[targets] + torch.randn(120, 64, generator=generator) * 1.5).clamp_min(0)
    return features, targets


def test_the_probe_converges_to_one_head_whatever_the_order_and_the_start() -> None:
    features, targets = _clusters(0)
    loss_fn = nn.CrossEntropyLoss()
    first, second = nn.Linear(64, 4), nn.Linear(64, 4)
    torch.manual_seed(1)
    nn.init.normal_(second.weight)
    order = torch.randperm(len(features))
    probe.fit_linear_head(first, features, targets, loss_fn=loss_fn)
    probe.fit_linear_head(second, features[order], targets[order], loss_fn=loss_fn)
    probe_input = _clusters(1)[0]
    assert torch.allclose(first(probe_input), second(probe_input), atol=1e-2)


def test_the_probe_fits_nearly_the_same_head_from_bfloat16_rounded_features() -> None:
    features, targets = _clusters(2)
    rounded = features.to(torch.bfloat16).float()
    exact, coarse = nn.Linear(64, 4), nn.Linear(64, 4)
    probe.fit_linear_head(exact, features, targets, loss_fn=nn.CrossEntropyLoss())
    probe.fit_linear_head(coarse, rounded, targets, loss_fn=nn.CrossEntropyLoss())
    new, _ = _clusters(3)
    with torch.no_grad():
        agree = float((exact(new).argmax(1) == coarse(new).argmax(1)).float().mean())
    assert agree >= 0.97, agree


def test_the_probe_records_loss_and_accuracy_on_the_training_features() -> None:
    features, targets = _clusters(4)
    head = nn.Linear(64, 4)
    loss, accuracy = probe.fit_linear_head(head, features, targets, loss_fn=nn.CrossEntropyLoss())
    with torch.no_grad():
        assert accuracy == float((head(features).argmax(1) == targets).float().mean())
        assert loss == pytest.approx(float(nn.CrossEntropyLoss()(head(features), targets)), rel=1e-5)
    assert json.dumps({"loss": loss, "accuracy": accuracy})
