"""Watch caches (kopf indexes) of everything the reconcilers read, so a reconcile reads no API.

A change of a child also asks for a reconcile of its owner (see :mod:`galley.operator.workqueue`).

Each index of children keeps only the fields the reconcilers look at, keyed by ``(namespace, owner
uid)``: the uid its ownerReferences name, never its name or labels. A Job left behind by a deleted
TrainingJob (orphaned), or a Deployment someone else made under a predictor's name, is no child of
the resource that now carries the name, so no reconcile reads, patches or deletes it as one. The
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


def owner_uids(meta: kopf.Meta, kind: str, group: str | None = GROUP) -> list[str]:
    """The uids of the ``kind`` owners (of API ``group``; None: the core or batch kinds) that
    ``meta``'s ownerReferences name."""
    uids = []
    for ref in meta.get("ownerReferences") or []:
        api_version = str(ref.get("apiVersion") or "")
        if ref.get("kind") == kind and ref.get("uid") and (group is None or api_version.startswith(group + "/")):
            uids.append(str(ref["uid"]))
    return uids


def _by_owner(namespace: str | None, uids: list[str], value: Any) -> dict[Key, Any]:
    """Index entries under every owner uid (none: the object is nobody's child here)."""
    return {(namespace, uid): value for uid in uids}


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
        runtime.queue.requeue_owner(owner[0], namespace, owner[1])


@kopf.index("batch", "v1", "jobs", labels={TRAINING_JOB_LABEL: kopf.PRESENT})
def trainer_jobs(namespace: str | None, name: str, labels: kopf.Labels, spec: kopf.Spec, status: kopf.Status,
                 meta: kopf.Meta, memo: kopf.Memo, **_: Any) -> dict[Key, dict[str, Any]]:
    """TrainingJob uid -> its Job's name and uid (whose Pods are its trainers), and what
    observe_trainer reads of the Job: its status, and whether the API server kept its podFailurePolicy."""
    seen = {"name": name, "uid": meta.get("uid"), "podFailurePolicy": bool(spec.get("podFailurePolicy")),
            "status": {k: status.get(k) for k in ("startTime", "completionTime", "conditions") if k in status}}
    owners = owner_uids(meta, "TrainingJob")
    if owners:
        _requeue_if_changed(memo, "Job", namespace, name, ("trainingjobs", labels[TRAINING_JOB_LABEL]), seen)
    return _by_owner(namespace, owners, seen)


@kopf.index("v1", "pods", labels={TRAINING_JOB_LABEL: kopf.PRESENT})
def trainer_pods(namespace: str | None, name: str, labels: kopf.Labels, status: kopf.Status, meta: kopf.Meta,
                 memo: kopf.Memo, **_: Any) -> dict[Key, dict[str, Any]]:
    """Job uid -> what observe_trainer reads of each of its Pods' status."""
    seen = {"status": {k: status.get(k) for k in ("phase", "conditions", "containerStatuses",
                                                  "initContainerStatuses") if k in status}}
    owners = owner_uids(meta, "Job", group=None)
    if owners:
        _requeue_if_changed(memo, "Pod", namespace, name, ("trainingjobs", labels[TRAINING_JOB_LABEL]), seen)
    return _by_owner(namespace, owners, seen)


@kopf.index("apps", "v1", "deployments", labels={SERVICE_LABEL: kopf.PRESENT})
def predictor_deployments(namespace: str | None, name: str, labels: kopf.Labels, spec: kopf.Spec,
                          status: kopf.Status, meta: kopf.Meta, memo: kopf.Memo, **_: Any,
                          ) -> dict[Key, dict[str, Any]]:
    """OnlineService uid -> its predictor Deployment's name, uid, replicas, template digest, rollout
    state, and why the Deployment cannot make its pods (ReplicaFailure: a quota, a policy)."""
    annotations = ((spec.get("template") or {}).get("metadata") or {}).get("annotations") or {}
    failure = next((c for c in status.get("conditions") or []
                    if c.get("type") == "ReplicaFailure" and c.get("status") == "True"), None)
    seen = {"name": name, "uid": meta.get("uid"), "spec": {"replicas": spec.get("replicas", 0)},
            "template": {k: annotations.get(k) for k in ("galley.dev/template-hash", "galley.dev/model-uri")},
            "status": {"readyReplicas": status.get("readyReplicas", 0),
                       "updatedReplicas": status.get("updatedReplicas", 0),
                       "replicas": status.get("replicas", 0)},
            "rolledOut": status.get("observedGeneration") == meta.get("generation"),
            "replicaFailure": failure.get("message") or failure.get("reason") if failure else None}
    owners = owner_uids(meta, "OnlineService")
    if owners:
        _requeue_if_changed(memo, "Deployment", namespace, name, ("onlineservices", labels[SERVICE_LABEL]), seen)
    return _by_owner(namespace, owners, seen)


@kopf.on.event("batch", "v1", "jobs", labels={TRAINING_JOB_LABEL: kopf.PRESENT},
               when=lambda type, **_: type == "DELETED")
@kopf.on.event("v1", "pods", labels={TRAINING_JOB_LABEL: kopf.PRESENT}, when=lambda type, **_: type == "DELETED")
@kopf.on.event("apps", "v1", "deployments", labels={SERVICE_LABEL: kopf.PRESENT},
               when=lambda type, **_: type == "DELETED")
@kopf.on.event("networking.k8s.io", "v1", "ingresses", labels={SERVICE_LABEL: kopf.PRESENT},
               when=lambda type, **_: type == "DELETED")
@kopf.on.event("v1", "services", labels={SERVICE_LABEL: kopf.PRESENT}, when=lambda type, **_: type == "DELETED")
async def child_deleted(namespace: str | None, name: str, labels: kopf.Labels, resource: kopf.Resource,
                        memo: kopf.Memo, **_: Any) -> None:
    """A child is gone (deleted by hand, or its owner is going): its owner looks again at once."""
    runtime = operator_runtime.of(memo)
    runtime.seen_children.pop((resource.kind or "", namespace, name), None)
    runtime.recent.forget((resource.kind or "", namespace or "default", name))
    if TRAINING_JOB_LABEL in labels:
        runtime.queue.requeue_owner("trainingjobs", namespace, labels[TRAINING_JOB_LABEL])
    elif SERVICE_LABEL in labels:
        runtime.queue.requeue_owner("onlineservices", namespace, labels[SERVICE_LABEL])


@kopf.index("networking.k8s.io", "v1", "ingresses", labels={SERVICE_LABEL: kopf.PRESENT})
def predictor_ingresses(namespace: str | None, name: str, labels: kopf.Labels, spec: kopf.Spec, meta: kopf.Meta,
                        memo: kopf.Memo, **_: Any,
                        ) -> dict[Key, dict[str, Any]]:
    """OnlineService uid -> its Ingress's name, uid and spec (``spec.expose.ingress``)."""
    seen = {"name": name, "uid": meta.get("uid"), "spec": dict(spec)}
    owners = owner_uids(meta, "OnlineService")
    if owners:
        _requeue_if_changed(memo, "Ingress", namespace, name, ("onlineservices", labels[SERVICE_LABEL]), seen)
    return _by_owner(namespace, owners, seen)


@kopf.index("v1", "services", labels={SERVICE_LABEL: kopf.PRESENT})
def predictor_services(namespace: str | None, name: str, meta: kopf.Meta, **_: Any) -> dict[Key, dict[str, Any]]:
    """OnlineService uid -> its predictor Service's name and uid."""
    return _by_owner(namespace, owner_uids(meta, "OnlineService"), {"name": name, "uid": meta.get("uid")})


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


def first(index: kopf.Index[Key, Any], namespace: str, key: str) -> Any:
    """The one value an index holds for ``(namespace, key)`` (a name, or an owner's uid), or None."""
    return next(iter(index.get((namespace, key), [])), None)


def every(index: kopf.Index[Key, Any], namespace: str, key: str) -> list[Any]:
    return list(index.get((namespace, key), []))

