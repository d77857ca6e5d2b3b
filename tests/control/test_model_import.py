"""A Model is an import: once Ready from a TrainingJob it keeps its package when the job goes.

The same rule on both backends: pure decisions here (:mod:`galley.control.models`), and the
embedded store carrying them out (a real package folder on disk, no network).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from galley.api.resources import Model, TrainingJob, TrainingJobStatus
from galley.control import reasons as r
from galley.control.conditions import find, set_condition
from galley.control.models import locate_package, model_status, package_digest
from galley.local import runner
from galley.local.models import reconcile_model
from galley.local.state import Store
from galley.model.config import PackageConfig, read_config

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def _package(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    config = PackageConfig(name="food", algorithm="mobilenet_v2", labels=["凉皮", "肉夹馍"])
    (folder / "config.json").write_text(config.to_json(), encoding="utf-8")
    return str(folder) + "/"


def _job(output: Path, uri: str, phase: str = "Succeeded", flavor: str = "cpu-2c-8g") -> dict[str, Any]:
    conditions = set_condition([], r.SUCCEEDED, "True" if phase == "Succeeded" else "False", r.COMPLETED, at=NOW)
    status = TrainingJobStatus(phase=phase, conditions=conditions, model_uri=uri)  # type: ignore[arg-type]
    return {"apiVersion": "galley.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "food-job", "uid": "u1"},
            "spec": {"algorithm": {"name": "mobilenet_v2"}, "dataset": {"uri": str(output / "data")},
                     "output": {"uri": str(output)}, "resources": {"flavor": flavor}},
            "status": status.model_dump(mode="json", by_alias=True, exclude_none=True)}


def _model(generation: int = 1) -> Model:
    return Model.model_validate({"apiVersion": "galley.dev/v1alpha1", "kind": "Model",
                                 "metadata": {"name": "food-model", "generation": generation},
                                 "spec": {"source": {"trainingJob": "food-job"}}})


def _imported(tmp_path: Path) -> tuple[Model, str]:
    uri = _package(tmp_path / "out" / "model")
    model = _model()
    job = TrainingJob.model_validate(_job(tmp_path / "out", uri))
    source = locate_package(model, job)
    status = model_status(model, source, read_config(uri), None, at=NOW)
    return model.model_copy(update={"status": status}), uri


def test_a_ready_model_keeps_its_package_uri_and_digest_when_its_job_is_deleted(tmp_path: Path) -> None:
    model, uri = _imported(tmp_path)
    assert model.status is not None and model.status.digest == package_digest(read_config(uri))
    assert model.status.digest.startswith("sha256:")

    source = locate_package(model, None)
    assert source.kept and source.uri == uri
    after = model_status(model, source, None, None, at=NOW)
    ready = find(after.conditions, r.READY)
    assert ready is not None and (ready.status, ready.reason) == ("True", r.PACKAGE_READY)
    assert (after.uri, after.digest, after.labels) == (uri, model.status.digest, ["凉皮", "肉夹馍"])
    gone = find(after.conditions, r.SOURCE_AVAILABLE)
    assert gone is not None and (gone.status, gone.reason) == ("False", r.TRAINING_JOB_DELETED)
    assert "'food-job' was deleted" in gone.message and uri in gone.message
    again = model.model_copy(update={"status": after})
    assert model_status(again, locate_package(again, None), None, None) == after  # settled: nothing to write


def test_a_spec_change_that_keeps_the_source_keeps_the_import(tmp_path: Path) -> None:
    """A version bump or a rotated Secret after the job is gone must not take the package away (the
    operator would then scale the predictor to 0); naming another source does move the Model."""
    model, uri = _imported(tmp_path)
    assert model.status is not None and model.status.imported_from == "food-job"
    bumped = model.model_copy(update={
        "metadata": model.metadata.model_copy(update={"generation": 2}),
        "spec": model.spec.model_copy(update={"version": "0.0.2"})})
    status = model_status(bumped, locate_package(bumped, None), None, None, at=NOW)
    ready = find(status.conditions, r.READY)
    assert ready is not None and (ready.status, ready.reason) == ("True", r.PACKAGE_READY)
    assert (status.uri, status.digest, status.observed_generation) == (uri, model.status.digest, 2)

    elsewhere = bumped.model_copy(update={
        "spec": bumped.spec.model_copy(update={"source": bumped.spec.source.model_copy(
            update={"training_job": "other-job"})})})
    moved = model_status(elsewhere, locate_package(elsewhere, None), None, None, at=NOW)
    ready = find(moved.conditions, r.READY)
    assert ready is not None and (ready.status, ready.reason) == ("False", r.TRAINING_JOB_NOT_FOUND)
    assert moved.uri is None and find(moved.conditions, r.SOURCE_AVAILABLE) is None


def test_a_job_re_created_under_the_name_does_not_move_an_imported_model(tmp_path: Path) -> None:
    model, uri = _imported(tmp_path)
    running = TrainingJob.model_validate(_job(tmp_path / "out", uri, phase="Running"))
    source = locate_package(model, running)
    assert source.kept and source.reason == r.TRAINING_JOB_REPLACED
    status = model_status(model, source, None, None, at=NOW)
    assert find(status.conditions, r.READY).status == "True"  # type: ignore[union-attr]
    assert status.uri == uri


def test_a_model_whose_job_fails_galleys_checks_gets_a_status(tmp_path: Path) -> None:
    source = locate_package(_model(), None, job_problem="spec.resources.flavor: unknown flavor 'gpu-t4-1'")
    status = model_status(_model(), source, None, None, at=NOW)
    ready = find(status.conditions, r.READY)
    assert ready is not None and (ready.status, ready.reason) == ("False", r.TRAINING_JOB_INVALID)
    assert "unknown flavor 'gpu-t4-1'" in ready.message


def _store_with_ready_model(tmp_path: Path) -> tuple[Store, str]:
    store = Store(tmp_path / "home")
    uri = _package(tmp_path / "out" / "model")
    job = _job(tmp_path / "out", uri)
    store.apply(TrainingJob.model_validate(job))
    stored = store.get(TrainingJob, "food-job")
    assert stored is not None
    store.save_status(stored, TrainingJobStatus.model_validate(job["status"]))
    store.apply(_model())
    recorded = reconcile_model(store, "food-model")
    assert find(recorded.status.conditions, r.READY).status == "True"  # type: ignore[union-attr]
    return store, uri


def test_the_embedded_backend_keeps_an_imported_model_when_its_job_is_deleted(tmp_path: Path) -> None:
    store, uri = _store_with_ready_model(tmp_path)
    store.delete("TrainingJob", "food-job")
    kept = reconcile_model(store, "food-model")
    assert kept.status is not None and kept.status.uri == uri and kept.status.digest
    assert find(kept.status.conditions, r.READY).status == "True"  # type: ignore[union-attr]
    assert find(kept.status.conditions, r.SOURCE_AVAILABLE).reason == r.TRAINING_JOB_DELETED  # type: ignore[union-attr]
    # `galley run` of the Model and nothing else: its job is not needed any more.
    manifest = tmp_path / "model.yaml"
    manifest.write_text(json.dumps(_model().to_manifest()), encoding="utf-8")
    assert runner._check_references(runner.load_resources([manifest]), store) == []


def test_the_embedded_backend_gives_a_model_a_status_when_its_job_fails_galleys_checks(tmp_path: Path) -> None:
    store = Store(tmp_path / "home")
    store.apply(_model())
    job_file = store.home / "trainingjobs" / "food-job.json"
    job_file.parent.mkdir(parents=True, exist_ok=True)
    job = _job(tmp_path / "out", "unused")
    job.pop("status")
    job["spec"]["resources"]["flavor"] = "gpu-t4-1"  # the catalogue lacks it (a chart upgrade dropped it)
    job_file.write_text(json.dumps(job), encoding="utf-8")
    recorded = reconcile_model(store, "food-model")
    ready = find(recorded.status.conditions, r.READY)  # type: ignore[union-attr]
    assert ready is not None and (ready.status, ready.reason) == ("False", r.TRAINING_JOB_INVALID)
    assert "gpu-t4-1" in ready.message
