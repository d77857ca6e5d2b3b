"""A job never silently continues another job's training, and the package says which epoch it holds."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from galley.api.resources import TrainingJob
from galley.control import reasons, termination
from galley.local.state import Store
from galley.local.training import run_training_job
from galley.manifests import load_resources
from galley.model.package import PackageError, fetch, read_config
from tests.trainer.helpers import job_manifest, write_job


def _apply(store: Store, path: Path) -> None:
    for resource in load_resources([str(path)]):
        store.apply(resource)


def _uid(store: Store, name: str) -> str | None:
    job = store.get(TrainingJob, name)
    assert job is not None
    return job.metadata.uid


def _run(job: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "galley.trainer", "-f", str(job)], capture_output=True,
                          text=True, timeout=600)


def test_a_second_job_on_the_same_output_stops_with_output_in_use(tmp_path: Path, food_photos: Any,
                                                                  mobilenet_weights: str) -> None:
    output = tmp_path / "shared-output"
    first = write_job(tmp_path / "first.yaml", job_manifest(
        "first", str(food_photos.manifest), str(output), weights=mobilenet_weights,
        learning_rate_strategy="1:0.001", image_size="64"))
    assert _run(first).returncode == 0
    before = {p: p.read_bytes() for p in output.rglob("*") if p.is_file()}

    second = write_job(tmp_path / "second.yaml", job_manifest(
        "second", str(food_photos.manifest), str(output), weights=mobilenet_weights,
        learning_rate_strategy="2:0.001", image_size="64"))
    refused = _run(second)
    assert refused.returncode == termination.EXIT_PERMANENT  # another run would meet the same checkpoints
    assert f"{output}/checkpoints holds checkpoints of another TrainingJob" in refused.stdout
    assert "resumeFromOtherJobs" in refused.stdout
    after = {p: p.read_bytes() for p in output.rglob("*") if p.is_file()}
    assert after == before  # nothing of the first job's output was touched, not even progress.json

    manifest = job_manifest("second", str(food_photos.manifest), str(output), weights=mobilenet_weights,
                            learning_rate_strategy="2:0.001", image_size="64")
    manifest["spec"]["output"]["resumeFromOtherJobs"] = True
    allowed = _run(write_job(tmp_path / "second-allowed.yaml", manifest))
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "resuming from the checkpoint of epoch 1" in allowed.stdout


def test_the_embedded_backend_reports_output_in_use_as_the_reason(tmp_path: Path, food_photos: Any,
                                                                  mobilenet_weights: str) -> None:
    output = tmp_path / "out"
    store = Store(tmp_path / ".galley")
    for name in ("first", "second"):
        write_job(tmp_path / f"{name}.yaml", job_manifest(
            name, str(food_photos.manifest), str(output), weights=mobilenet_weights,
            learning_rate_strategy="1:0.001", image_size="64"))
        _apply(store, tmp_path / f"{name}.yaml")
    assert run_training_job(store, "first").status.phase == "Succeeded"  # type: ignore[union-attr]
    second = run_training_job(store, "second")
    assert second.status is not None and second.status.phase == "Failed"
    failed = next(c for c in second.status.conditions if c.type == "Failed")
    assert failed.reason == reasons.OUTPUT_IN_USE
    assert f"{output}/checkpoints" in failed.message
    assert second.status.metrics is None  # the first job's numbers are not shown as the second's


def test_a_rerun_of_the_same_applied_job_resumes(tmp_path: Path, food_photos: Any, mobilenet_weights: str) -> None:
    output = tmp_path / "out"
    store = Store(tmp_path / ".galley")
    path = write_job(tmp_path / "job.yaml", job_manifest(
        "again", str(food_photos.manifest), str(output), weights=mobilenet_weights,
        learning_rate_strategy="1:0.001", image_size="64"))
    _apply(store, path)
    assert run_training_job(store, "again").status.phase == "Succeeded"  # type: ignore[union-attr]
    pointer = json.loads((output / "checkpoints" / "latest.json").read_text())
    uid = _uid(store, "again")
    assert uid and pointer["job"] == f"uid:{uid}"
    _apply(store, path)  # applied again: the same object keeps its uid, and so its checkpoints
    assert _uid(store, "again") == uid


def test_selection_last_packages_the_last_epoch_and_says_so(tmp_path: Path, food_photos: Any,
                                                           mobilenet_weights: str) -> None:
    output = tmp_path / "out"
    job = write_job(tmp_path / "job.yaml", job_manifest(
        "last", str(food_photos.manifest), str(output), weights=mobilenet_weights,
        learning_rate_strategy="2:0.001", image_size="64", selection="last"))
    assert _run(job).returncode == 0
    training = read_config(str(output / "model")).training
    assert (training["selected_epoch"], training["selection"]) == (2, "last")
    assert training["selection_reason"] == "Packaged the last epoch (2): asked for."
    assert training["selection_reason"] in (output / "model" / "report.html").read_text(encoding="utf-8")


def test_a_package_caught_mid_rewrite_is_never_read_as_whole(trained_package: Path, tmp_path: Path) -> None:
    package = tmp_path / "model"
    shutil.copytree(trained_package, package)
    config, folder = fetch(str(package), tmp_path / "scratch")
    assert set(config.files) >= {"model.safetensors", "model.onnx", "metrics.json", "report.html"}

    onnx = package / "model.onnx"
    original = onnx.read_bytes()
    onnx.write_bytes(original[:-16] + b"another run....!")  # new weights uploaded, config.json not yet
    with pytest.raises(PackageError, match=r"being rewritten or is damaged: model.onnx does not match config.json"):
        fetch(str(package), tmp_path / "scratch", attempts=2, wait=0.05)

    onnx.write_bytes(original)  # the rewrite settles
    config, folder = fetch(str(package), tmp_path / "scratch")
    assert (folder / "model.onnx").read_bytes() == original
