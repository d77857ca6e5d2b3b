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
from galley.operator import runtime as operator_runtime
from galley.operator.builders import SERVICE_LABEL, TRAINING_JOB_LABEL

Key = tuple[str | None, str]


def watch_only_children(settings: kopf.OperatorSettings) -> None:
    """Server-side label selectors for the children's watch streams."""
    settings.watching.label_selectors["batch", "jobs"] = TRAINING_JOB_LABEL
    settings.watching.label_selectors["v1", "pods"] = TRAINING_JOB_LABEL
    settings.watching.label_selectors["apps", "deployments"] = SERVICE_LABEL
    settings.watching.label_selectors["v1", "services"] = SERVICE_LABEL
    settings.watching.label_selectors["networking.k8s.io", "ingresses"] = SERVICE_LABEL


def _requeue_if_changed(memo: kopf.Memo, kind: str, namespace: str | None, name: str, owner: tuple[str, str],
                        seen: Any) -> None:
    """Ask for a reconcile of the owner when the fields it reads changed (other changes need none)."""
    runtime = operator_runtime.of(memo)
    key = (kind, namespace, name)
    if runtime.seen_children.get(key) != seen:
        runtime.seen_children[key] = seen
        runtime.scheduler.requeue_owner(owner[0], namespace, owner[1])


@kopf.index("batch", "v1", "jobs", labels={TRAINING_JOB_LABEL: kopf.PRESENT})
def trainer_jobs(namespace: str | None, name: str, labels: kopf.Labels, status: kopf.Status, memo: kopf.Memo,
                 **_: Any) -> dict[Key, dict[str, Any]]:
    """TrainingJob name -> what observe_trainer reads of its Job's status."""
    seen = {"status": {k: status.get(k) for k in ("startTime", "completionTime", "conditions") if k in status}}
    _requeue_if_changed(memo, "Job", namespace, name, ("trainingjobs", labels[TRAINING_JOB_LABEL]), seen)
    return {(namespace, labels[TRAINING_JOB_LABEL]): seen}


@kopf.index("v1", "pods", labels={TRAINING_JOB_LABEL: kopf.PRESENT})
def trainer_pods(namespace: str | None, name: str, labels: kopf.Labels, status: kopf.Status, memo: kopf.Memo,
                 **_: Any) -> dict[Key, dict[str, Any]]:
    """TrainingJob name -> what observe_trainer reads of each trainer Pod's status."""
    seen = {"status": {k: status.get(k) for k in ("phase", "conditions", "containerStatuses",
                                                  "initContainerStatuses") if k in status}}
    _requeue_if_changed(memo, "Pod", namespace, name, ("trainingjobs", labels[TRAINING_JOB_LABEL]), seen)
    return {(namespace, labels[TRAINING_JOB_LABEL]): seen}


@kopf.index("apps", "v1", "deployments", labels={SERVICE_LABEL: kopf.PRESENT})
def predictor_deployments(namespace: str | None, name: str, labels: kopf.Labels, spec: kopf.Spec,
                          status: kopf.Status, meta: kopf.Meta, memo: kopf.Memo, **_: Any,
                          ) -> dict[Key, dict[str, Any]]:
    """OnlineService name -> its predictor Deployment's replicas, template digest and rollout state."""
    annotations = ((spec.get("template") or {}).get("metadata") or {}).get("annotations") or {}
    seen = {"spec": {"replicas": spec.get("replicas", 0)},
            "template": {k: annotations.get(k) for k in ("galley.dev/template-hash", "galley.dev/model-uri")},
            "status": {"readyReplicas": status.get("readyReplicas", 0),
                       "updatedReplicas": status.get("updatedReplicas", 0),
                       "replicas": status.get("replicas", 0)},
            "rolledOut": status.get("observedGeneration") == meta.get("generation")}
    _requeue_if_changed(memo, "Deployment", namespace, name, ("onlineservices", labels[SERVICE_LABEL]), seen)
    return {(namespace, labels[SERVICE_LABEL]): seen}


@kopf.on.event("batch", "v1", "jobs", labels={TRAINING_JOB_LABEL: kopf.PRESENT},
               when=lambda type, **_: type == "DELETED")
@kopf.on.event("v1", "pods", labels={TRAINING_JOB_LABEL: kopf.PRESENT}, when=lambda type, **_: type == "DELETED")
@kopf.on.event("apps", "v1", "deployments", labels={SERVICE_LABEL: kopf.PRESENT},
               when=lambda type, **_: type == "DELETED")
@kopf.on.event("networking.k8s.io", "v1", "ingresses", labels={SERVICE_LABEL: kopf.PRESENT},
               when=lambda type, **_: type == "DELETED")
async def child_deleted(namespace: str | None, name: str, labels: kopf.Labels, resource: kopf.Resource,
                        memo: kopf.Memo, **_: Any) -> None:
    """A child is gone (deleted by hand, or its owner is going): its owner looks again at once."""
    runtime = operator_runtime.of(memo)
    runtime.seen_children.pop((resource.kind or "", namespace, name), None)
    runtime.recent.forget((resource.kind or "", namespace or "default", name))
    if TRAINING_JOB_LABEL in labels:
        runtime.scheduler.requeue_owner("trainingjobs", namespace, labels[TRAINING_JOB_LABEL])
    elif SERVICE_LABEL in labels:
        runtime.scheduler.requeue_owner("onlineservices", namespace, labels[SERVICE_LABEL])


@kopf.index("networking.k8s.io", "v1", "ingresses", labels={SERVICE_LABEL: kopf.PRESENT})
def predictor_ingresses(namespace: str | None, name: str, labels: kopf.Labels, spec: kopf.Spec, memo: kopf.Memo,
                        **_: Any,
                        ) -> dict[Key, dict[str, Any]]:
    """OnlineService name -> its Ingress's spec (``spec.expose.ingress``)."""
    seen = {"spec": dict(spec)}
    _requeue_if_changed(memo, "Ingress", namespace, name, ("onlineservices", labels[SERVICE_LABEL]), seen)
    return {(namespace, labels[SERVICE_LABEL]): seen}


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
