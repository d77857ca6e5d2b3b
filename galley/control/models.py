"""Model status: where the package is, and whether it checks out.

A Model is an import: once Ready from a TrainingJob, it keeps the package URI and digest it
recorded, at that spec, whatever becomes of the job. Deleting a finished job (tidying, a TTL
cleaner) leaves the Model Ready, its services serving, and ``SourceAvailable=False`` saying the
job is gone; only a change of the Model's spec (a new generation) looks for the package again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime

from galley.api.resources import Model, ModelStatus, TrainingJob
from galley.control import reasons as r
from galley.control.conditions import is_true, set_condition
from galley.model.config import PackageConfig


@dataclass(frozen=True)
class PackageSource:
    """Where a Model's package is, or why it is not there yet."""

    uri: str | None
    reason: str | None = None
    message: str = ""
    kept: bool = False
    """The Model keeps the package it imported (``reason`` says why the job no longer vouches for
    it): nothing needs reading, and its status stays as recorded."""


def package_digest(config: PackageConfig) -> str:
    """What identifies a package's contents: a SHA-256 of its config.json's fields, which hold the
    SHA-256 of every other file of the package."""
    text = json.dumps(asdict(config), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def imported(model: Model) -> bool:
    """Whether the Model holds a package imported from the TrainingJob its spec names: Ready, with a
    URI recorded from that job. Another spec change (a version, a Secret) keeps the import; a
    status written before ``importedFrom`` existed counts for the generation it was written at."""
    status = model.status
    source = model.spec.source.training_job
    if not (source and status is not None and status.uri and is_true(status.conditions, r.READY)):
        return False
    if status.imported_from is not None:
        return status.imported_from == source
    return status.observed_generation == model.metadata.generation


def _succeeded(job: TrainingJob) -> bool:
    status = job.status
    return status is not None and status.phase == "Succeeded" and is_true(status.conditions, r.SUCCEEDED)


def _kept(model: Model, job: TrainingJob | None, job_problem: str | None) -> PackageSource | None:
    """The imported package, kept, when its job no longer vouches for it; None to follow the job."""
    if not imported(model):
        return None
    assert model.status is not None and model.status.uri
    uri, name = model.status.uri, model.spec.source.training_job
    keeps = f"the Model keeps the package it imported ({uri}"
    keeps += f", {model.status.digest})" if model.status.digest else ")"
    if job is None:
        return PackageSource(uri, r.TRAINING_JOB_DELETED, f"TrainingJob {name!r} was deleted; {keeps}", kept=True)
    if job_problem is not None:
        return PackageSource(uri, r.TRAINING_JOB_INVALID,
                             f"TrainingJob {name!r} no longer passes Galley's checks ({job_problem}); {keeps}",
                             kept=True)
    if _succeeded(job) and job.status is not None and job.status.model_uri == uri:
        return None  # still the run the package came from
    phase = job.status.phase if job.status and job.status.phase else "Pending"
    return PackageSource(uri, r.TRAINING_JOB_REPLACED,
                         f"TrainingJob {name!r} ({phase}) is not the run the package came from; {keeps}", kept=True)


def locate_package(model: Model, job: TrainingJob | None, job_problem: str | None = None) -> PackageSource:
    """The package URI from ``spec.source``; ``job`` is the named TrainingJob, None when it does not
    exist; ``job_problem`` says why a job that exists fails Galley's checks (then ``job`` is None).

    A Model that imported its package (:func:`imported`) keeps it when the job is gone, invalid,
    or another run: see :attr:`PackageSource.kept`.
    """
    source = model.spec.source
    if source.uri:
        return PackageSource(source.uri)
    kept = _kept(model, job, job_problem)
    if kept is not None:
        return kept
    if job_problem is not None:
        return PackageSource(None, r.TRAINING_JOB_INVALID,
                             f"TrainingJob {source.training_job!r} does not pass Galley's checks: {job_problem}")
    if job is None:
        return PackageSource(None, r.TRAINING_JOB_NOT_FOUND, f"TrainingJob {source.training_job!r} does not exist")
    status = job.status
    if status is not None and status.phase == "Failed":
        return PackageSource(None, r.TRAINING_JOB_FAILED, f"TrainingJob {job.name!r} failed; it wrote no package")
    if status is None or status.phase != "Succeeded" or not is_true(status.conditions, r.SUCCEEDED):
        phase = status.phase if status and status.phase else "Pending"
        return PackageSource(None, r.TRAINING_JOB_NOT_FINISHED, f"waiting for TrainingJob {job.name!r} ({phase})")
    return PackageSource(status.model_uri)


def model_status(model: Model, source: PackageSource, config: PackageConfig | None, error: str | None,
                 at: datetime | None = None, *, unreachable: bool = False) -> ModelStatus:
    """Ready when the package's config.json reads and checks out.

    ``unreachable`` says the store did not answer (a timeout, an outage, credentials being
    rotated). That is no news about the package: a Ready Model of the same URI stays Ready, and
    its services keep serving, with ``PackageReachable=False`` saying why until a read succeeds.
    """
    previous = model.status or ModelStatus()
    generation = model.metadata.generation
    if source.kept:
        conditions = set_condition(previous.conditions, r.SOURCE_AVAILABLE, "False",
                                   source.reason or r.TRAINING_JOB_DELETED, source.message,
                                   generation=generation, at=at)
        return previous.model_copy(update={"conditions": conditions, "observed_generation": generation})
    if source.uri is None:
        # Not (or no longer, after a spec change) an import: Ready says what is missing, alone.
        conditions = [c for c in previous.conditions if c.type != r.SOURCE_AVAILABLE]
        conditions = set_condition(conditions, r.READY, "False", source.reason or r.PACKAGE_MISSING,
                                   source.message, generation=generation, at=at)
        return ModelStatus(conditions=conditions, observed_generation=generation)
    if config is None and unreachable:
        conditions = set_condition(previous.conditions, r.PACKAGE_REACHABLE, "False", r.STORAGE_UNAVAILABLE,
                                   error or "", generation=generation, at=at)
        if is_true(previous.conditions, r.READY) and previous.uri == source.uri:
            return previous.model_copy(update={"conditions": conditions, "observed_generation": generation})
        conditions = set_condition(conditions, r.READY, "False", r.STORAGE_UNAVAILABLE, error or "",
                                   generation=generation, at=at)
        return ModelStatus(conditions=conditions, observed_generation=generation, uri=source.uri)
    conditions = previous.conditions
    if model.spec.source.training_job and any(c.type == r.SOURCE_AVAILABLE for c in conditions):
        conditions = set_condition(conditions, r.SOURCE_AVAILABLE, "True", r.TRAINING_JOB_PRESENT,
                                   f"TrainingJob {model.spec.source.training_job!r} names this package",
                                   generation=generation, at=at)
    if any(c.type == r.PACKAGE_REACHABLE for c in conditions):
        conditions = set_condition(conditions, r.PACKAGE_REACHABLE, "True", r.STORAGE_REACHABLE, "",
                                   generation=generation, at=at)
    if config is None:
        reason = r.PACKAGE_MISSING if error and "no model package" in error else r.PACKAGE_INVALID
        conditions = set_condition(conditions, r.READY, "False", reason, error or "", generation=generation, at=at)
        return ModelStatus(conditions=conditions, observed_generation=generation, uri=source.uri)
    conditions = set_condition(conditions, r.READY, "True", r.PACKAGE_READY,
                               f"{config.algorithm}, {len(config.labels)} classes", generation=generation, at=at)
    return ModelStatus(conditions=conditions, observed_generation=generation, uri=source.uri,
                       digest=package_digest(config), labels=config.labels, metrics=config.metrics,
                       algorithm=config.algorithm, imported_from=model.spec.source.training_job)
