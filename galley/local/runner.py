"""``galley run -f DIR``: apply TrainingJobs, Models and OnlineServices and carry them out here.

In order: every resource is validated (nothing is touched when one is invalid), references are
checked, jobs train (resuming from checkpoints), models are recorded, services are served until
they stop by themselves or Ctrl-C.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from galley.api.resources import Model, OnlineService, Resource, TrainingJob
from galley.commands import request_start
from galley.control import reasons as r
from galley.control.conditions import find
from galley.control.models import imported
from galley.local.models import reconcile_model
from galley.local.secrets import ConflictingSecrets, use_secret_of
from galley.local.services import Supervisor
from galley.local.state import Store
from galley.local.training import run_training_job
from galley.manifests import InvalidManifests, Problem, load_resources

log = logging.getLogger("galley.local")


class RunFailed(RuntimeError):
    """A step failed; the message says which and why."""


def _imported(store: Store, model: Model) -> bool:
    """The stored Model of that name, with the same spec, already imported its package: it needs
    its TrainingJob no more (:func:`galley.control.models.imported`)."""
    stored = store.get(Model, model.name)
    return stored is not None and stored.spec == model.spec and imported(stored)


def _check_references(resources: list[Resource], store: Store) -> list[Problem]:
    jobs = {x.name for x in resources if isinstance(x, TrainingJob)} | {x.name for x in store.all(TrainingJob)}
    models = {x.name for x in resources if isinstance(x, Model)} | {x.name for x in store.all(Model)}
    problems = []
    for resource in resources:
        if isinstance(resource, Model) and resource.spec.source.training_job not in (None, *jobs) \
                and not _imported(store, resource):
            problems.append(Problem("-", f"Model/{resource.name}", "spec.source.trainingJob",
                                    f"TrainingJob {resource.spec.source.training_job!r} is not defined"))
        if isinstance(resource, OnlineService) and resource.spec.model not in models:
            problems.append(Problem("-", f"OnlineService/{resource.name}", "spec.model",
                                    f"Model {resource.spec.model!r} is not defined"))
    return problems


def run(paths: Sequence[str | Path], store: Store | None = None,
        on_ready: Callable[[OnlineService], None] | None = None) -> None:
    """Apply and carry out everything in ``paths``; raises :class:`InvalidManifests` or :class:`RunFailed`."""
    store = store or Store()
    resources = load_resources(paths)
    problems = _check_references(resources, store)
    if problems:
        raise InvalidManifests(problems)
    try:
        use_secret_of(resources, store.home)
    except (ConflictingSecrets, ValueError, OSError) as error:
        raise RunFailed(str(error)) from None
    for resource in resources:
        store.apply(resource)
    for job in (x for x in resources if isinstance(x, TrainingJob)):
        result = run_training_job(store, job.name)
        if result.status is None or result.status.phase != "Succeeded":
            failed = find(result.status.conditions, r.FAILED) if result.status else None
            raise RunFailed(f"TrainingJob {job.name} failed: {failed.message if failed else 'see galley logs'}")
        metrics = result.status.metrics
        accuracy = metrics.accuracy if metrics else None
        log.info("TrainingJob %s succeeded: eval accuracy %s, package at %s", job.name,
                 "-" if accuracy is None else f"{accuracy:.4f}", result.status.model_uri)
    for model in (x for x in resources if isinstance(x, Model)):
        recorded = reconcile_model(store, model.name)
        ready = find(recorded.status.conditions, r.READY) if recorded.status else None
        if ready is None or ready.status != "True":
            raise RunFailed(f"Model {model.name} is not ready: {ready.message if ready else 'unknown'}")
        log.info("Model %s ready: %s, labels %s", model.name, recorded.status.algorithm,  # type: ignore[union-attr]
                 ", ".join(recorded.status.labels))  # type: ignore[union-attr]
    services = [x.name for x in resources if isinstance(x, OnlineService)]
    for name in services:
        stored = store.get(OnlineService, name)
        if stored is not None and stored.status is not None and stored.status.phase == "Stopped":
            request_start(store, name)  # `galley run` serves again what an earlier run left stopped
    if services:
        Supervisor(store, services, on_ready=on_ready).run()
