"""Watch caches (kopf indexes) of everything the reconcilers read, so a reconcile reads no API.

A change of a child also asks for a reconcile of its owner (see :mod:`galley.operator.scheduler`).

Each index keeps only the fields the reconcilers look at, keyed by ``(namespace, owner name)``. The
children are watched with server-side label selectors (see :func:`watch_only_children`), so the
operator receives the Jobs, Pods, Deployments and Services it made, not every one in the cluster.
"""

from __future__ import annotations

from typing import Any

import kopf

from galley.api.meta import GROUP, VERSION
from galley.operator.builders import SERVICE_LABEL, TRAINING_JOB_LABEL
from galley.operator.scheduler import requeue_owner

Key = tuple[str | None, str]


def watch_only_children(settings: kopf.OperatorSettings) -> None:
    """Server-side label selectors for the children's watch streams."""
    settings.watching.label_selectors["batch", "jobs"] = TRAINING_JOB_LABEL
    settings.watching.label_selectors["v1", "pods"] = TRAINING_JOB_LABEL
    settings.watching.label_selectors["apps", "deployments"] = SERVICE_LABEL
    settings.watching.label_selectors["v1", "services"] = SERVICE_LABEL


@kopf.index("batch", "v1", "jobs", labels={TRAINING_JOB_LABEL: kopf.PRESENT})
def trainer_jobs(namespace: str | None, labels: kopf.Labels, status: kopf.Status, **_: Any,
                 ) -> dict[Key, dict[str, Any]]:
    """TrainingJob name -> its trainer Job's status."""
    requeue_owner("trainingjobs", namespace, labels[TRAINING_JOB_LABEL])
    return {(namespace, labels[TRAINING_JOB_LABEL]): {"status": dict(status)}}


@kopf.index("v1", "pods", labels={TRAINING_JOB_LABEL: kopf.PRESENT})
def trainer_pods(namespace: str | None, labels: kopf.Labels, status: kopf.Status, **_: Any,
                 ) -> dict[Key, dict[str, Any]]:
    """TrainingJob name -> the status of each of its trainer Pods."""
    requeue_owner("trainingjobs", namespace, labels[TRAINING_JOB_LABEL])
    return {(namespace, labels[TRAINING_JOB_LABEL]): {"status": dict(status)}}


@kopf.index("apps", "v1", "deployments", labels={SERVICE_LABEL: kopf.PRESENT})
def predictor_deployments(namespace: str | None, labels: kopf.Labels, spec: kopf.Spec, status: kopf.Status,
                          **_: Any) -> dict[Key, dict[str, Any]]:
    """OnlineService name -> its predictor Deployment's replicas and status."""
    requeue_owner("onlineservices", namespace, labels[SERVICE_LABEL])
    return {(namespace, labels[SERVICE_LABEL]): {"spec": {"replicas": spec.get("replicas", 0)},
                                                 "status": dict(status)}}


@kopf.index("v1", "services", labels={SERVICE_LABEL: kopf.PRESENT})
def predictor_services(namespace: str | None, labels: kopf.Labels, name: str, **_: Any) -> dict[Key, str]:
    """OnlineService name -> the name of its predictor Service."""
    return {(namespace, labels[SERVICE_LABEL]): name}


@kopf.index(GROUP, VERSION, "trainingjobs")
def training_jobs(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Key, dict[str, Any]]:
    """TrainingJob name -> the resource, for the Models that point at it."""
    return {(namespace, name): _plain(body)}


@kopf.index(GROUP, VERSION, "models")
def models(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Key, dict[str, Any]]:
    """Model name -> the resource, for the OnlineServices that serve it."""
    return {(namespace, name): _plain(body)}


def _plain(body: kopf.Body) -> dict[str, Any]:
    return {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"), "metadata": dict(body.metadata),
            "spec": dict(body.spec), "status": dict(body.status)}


def first(index: kopf.Index[Key, Any], namespace: str, name: str) -> Any:
    """The one value an index holds for ``(namespace, name)``, or None."""
    return next(iter(index.get((namespace, name), [])), None)


def every(index: kopf.Index[Key, Any], namespace: str, name: str) -> list[Any]:
    return list(index.get((namespace, name), []))
