"""Recording a Model on this machine: find its package and check it, as the operator does."""

from __future__ import annotations

from galley.api.resources import Model, TrainingJob
from galley.control.models import locate_package, model_status
from galley.local.state import Store
from galley.model import config as package  # config.json only: recording a Model loads no torch


def reconcile_model(store: Store, name: str) -> Model:
    model = store.get(Model, name)
    assert model is not None, name
    job_name = model.spec.source.training_job
    job = store.get(TrainingJob, job_name) if job_name else None
    source = locate_package(model, job)
    config, error, unreachable = None, None, False
    if source.uri:
        try:
            config = package.read_config(source.uri)
        except package.PackageError as problem:
            error, unreachable = str(problem), isinstance(problem, package.PackageUnreachable)
    status = model_status(model, source, config, error, unreachable=unreachable)
    store.save_status(model, status)
    return model.model_copy(update={"status": status})
