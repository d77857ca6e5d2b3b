"""Model: find the package, check its config.json, record what it holds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf
from pydantic import ValidationError

from galley.api.meta import NAMES_KEPT
from galley.api.resources import Model, TrainingJob
from galley.control import reasons as r
from galley.control.conditions import field_problem, is_true
from galley.control.models import locate_package, model_status
from galley.model.config import PackageConfig, PackageError, PackageUnreachable, read_config
from galley.operator import metrics
from galley.operator.indexes import first
from galley.operator.reconcile.status import (
    RESYNC_FACTOR,
    Next,
    invalid_spec,
    status_patch,
    storage_of,
    write_status,
)
from galley.operator.runtime import Runtime


def reconcile_model(runtime: Runtime, body: kopf.Body, patch: kopf.Patch, indexes: Mapping[str, Any]) -> Next:
    """Find the package (from the TrainingJob or the URI), check config.json, record what it holds.

    A change of its TrainingJob brings a reconcile; a Model that is not Ready also looks again
    every interval (its package may be uploaded by hand), a Ready one every few minutes. A Model
    that imported its package from a job keeps it without reading storage once the job no longer
    vouches for it (:func:`galley.control.models.locate_package`).
    """
    namespace = body.metadata.namespace or "default"
    try:
        model = Model.model_validate(dict(body))
    except ValidationError as invalid:
        return invalid_spec(runtime, body, patch, invalid)
    job_name = model.spec.source.training_job
    job_body = first(indexes["training_jobs"], namespace, job_name) if job_name else None
    job, job_problem = None, None
    if job_body:
        try:
            job = TrainingJob.model_validate(job_body, context={
                NAMES_KEPT: (job_body.get("status") or {}).get("phase") is not None})
        except ValidationError as invalid:  # the job's own reconcile says so on the job; the Model says so here
            job_problem = field_problem(invalid)
    source = locate_package(model, job, job_problem)
    config_, error, unreachable = None, None, False
    if source.uri and not source.kept:
        secret = model.spec.storage.secret_ref or (job.spec.storage.secret_ref if job else None)
        config_, error, unreachable = _package_config(runtime, namespace, source.uri, secret)
    status = model_status(model, source, config_, error, unreachable=unreachable)
    changed = write_status(body, patch, status_patch(status))
    ready = is_true(status.conditions, r.READY)
    metrics.record_resource(Model.KIND, namespace, model.name, "Ready" if ready else "NotReady")
    return Next(runtime.settings.interval * (RESYNC_FACTOR if ready else 1), changed)


def _package_config(runtime: Runtime, namespace: str, uri: str,
                    secret: str | None) -> tuple[PackageConfig | None, str | None, bool]:
    """The package's config.json, or why it cannot be read and whether that may pass (the store
    did not answer, as opposed to answering that there is no package)."""

    def load() -> tuple[PackageConfig | None, str | None, bool]:
        try:
            with storage_of(runtime, namespace, secret):
                return read_config(uri), None, False
        except PackageUnreachable as problem:
            return None, str(problem), True
        except (PackageError, LookupError) as problem:
            return None, str(problem), False

    return runtime.package_configs.get((namespace, uri, secret), load)


