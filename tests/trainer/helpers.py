"""Writing TrainingJob manifests for trainer tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def job_manifest(name: str, dataset: str, output: str, *, algorithm: str = "mobilenet_v2",
                 weights: str | None = None, pretrained: bool = True, **hyperparameters: str) -> dict[str, Any]:
    spec_algorithm: dict[str, Any] = {"name": algorithm, "pretrained": pretrained}
    if weights:
        spec_algorithm["weights"] = weights
    return {
        "apiVersion": "galley.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": name},
        "spec": {"algorithm": spec_algorithm, "dataset": {"uri": dataset}, "output": {"uri": output},
                 "hyperparameters": {"image_size": "96", **hyperparameters}},
    }


def write_job(path: Path, manifest: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(manifest, allow_unicode=True), encoding="utf-8")
    return path
