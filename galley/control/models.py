"""Model status: where the package is, and whether it checks out."""

from __future__ import annotations

from dataclasses import dataclass
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


def locate_package(model: Model, job: TrainingJob | None) -> PackageSource:
    """The package URI from ``spec.source``; ``job`` is the named TrainingJob, None when it does not exist."""
    source = model.spec.source
    if source.uri:
        return PackageSource(source.uri)
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
    if source.uri is None:
        conditions = set_condition(previous.conditions, r.READY, "False", source.reason or r.PACKAGE_MISSING,
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
                       labels=config.labels, metrics=config.metrics, algorithm=config.algorithm)
