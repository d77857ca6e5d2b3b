"""Recording a Model on this machine: find its package and check it, as the operator does."""

from __future__ import annotations

from pydantic import ValidationError

from galley.api.resources import Model, TrainingJob
from galley.control.conditions import field_problem
from galley.control.models import locate_package, model_status
from galley.local.state import Store
from galley.model import config as package  # config.json only: recording a Model loads no torch


def reconcile_model(store: Store, name: str) -> Model:
    """Record the Model's package as the operator would: a Model that imported its package from a
    job keeps it once the job is gone (:func:`galley.control.models.locate_package`)."""
    model = store.get(Model, name)
    assert model is not None, name
    job_name = model.spec.source.training_job
    job, job_problem = None, None
    try:
        job = store.get(TrainingJob, job_name) if job_name else None
    except ValidationError as invalid:
        job_problem = field_problem(invalid)
    source = locate_package(model, job, job_problem)
    config, error, unreachable = None, None, False
    if source.uri and not source.kept:
        try:
            config = package.read_config(source.uri)
        except package.PackageError as problem:
            error, unreachable = str(problem), isinstance(problem, package.PackageUnreachable)
    status = model_status(model, source, config, error, unreachable=unreachable)
    store.save_status(model, status)
    return model.model_copy(update={"status": status})
