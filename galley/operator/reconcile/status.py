"""What every kind's reconcile shares: the status it writes (only fields that changed), the
InvalidSpec answer, phase-change Events, storage read as the resource may, and when to look again."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import kopf
from pydantic import ValidationError

from galley import storage
from galley.api.meta import Condition
from galley.api.resources import Usage
from galley.control import reasons as r
from galley.control.conditions import field_problem, set_condition
from galley.operator import kube, metrics
from galley.operator.runtime import Runtime

log = logging.getLogger("galley.operator")
RESYNC_FACTOR = 30
"""Settled resources are looked at again every RESYNC_FACTOR intervals, as a safety net."""


def status_patch(status: Any) -> dict[str, Any]:
    """Status as a merge patch: fields that became unset are removed (null), lists replaced whole.

    Inside list items (conditions) unset and empty fields are left out rather than sent as null or
    "": the API server's schema validation refuses a null message.
    """
    data: dict[str, Any] = status.model_dump(mode="json", by_alias=True)
    for key, value in data.items():
        if isinstance(value, list):
            data[key] = without_empty(value)
        elif value == "":
            data[key] = None
    return data


def without_empty(items: list[Any]) -> list[Any]:
    """List items (conditions) with their unset and empty fields left out."""
    return [_pruned(item) for item in items]


def _pruned(value: Any) -> Any:
    """A value with unset, empty and null fields dropped at every level: what the API server keeps."""
    if isinstance(value, dict):
        kept = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v is not None} or None
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return None if value == "" else value


@dataclass(frozen=True)
class Next:
    """What a reconcile asks for afterwards."""

    after: float | None
    """Seconds until this resource should be looked at again (None: only when something changes)."""
    changed: bool
    """Its status changed: resources that depend on it (Models, OnlineServices) should look again."""


HANDLER_FIELDS = {"lastHandledReconcileAt"}
"""Status fields the handlers write around every reconcile; reconcilers leave them alone."""


def write_status(body: kopf.Body, patch: kopf.Patch, desired: dict[str, Any]) -> bool:
    """Patch only the status fields that differ from what the resource already says.

    Level-triggered handlers see their own writes come back as watch events; an unchanged status
    is not written again, so that loop ends after one turn.
    """
    current = body.get("status") or {}
    changed = {k: v for k, v in desired.items()
               if k not in HANDLER_FIELDS and _pruned(v) != _pruned(current.get(k))}
    if changed:
        patch.status.update(changed)
    return bool(changed)


@contextlib.contextmanager
def storage_of(runtime: Runtime, namespace: str, secret: str | None) -> Iterator[None]:
    """Storage as the resource may read it: its Secret, else the install's default Secret, else
    anonymous; the install's endpoint where the Secret names none. Never the operator's identity."""
    settings = runtime.settings
    values = dict(runtime.secret_values(namespace, secret or settings.default_storage_secret))
    if settings.storage_endpoint:
        values.setdefault(storage.DEFAULT_ENDPOINT, settings.storage_endpoint)
    with storage.using_credentials(values):
        yield


def recently_created(runtime: Runtime, kind: str, namespace: str, name: str, owner_uid: str) -> dict[str, Any] | None:
    """A child this process created lately for the owner with ``owner_uid`` (the watch cache may
    lag its own creation by a moment); one made for an earlier owner of the name is not it."""
    seen = runtime.recent.peek((kind, namespace, name))
    return seen if seen is not None and seen.get("owner") == owner_uid else None


def remember_created(runtime: Runtime, kind: str, namespace: str, name: str, owner_uid: str,
                     seen: dict[str, Any]) -> None:
    runtime.recent.put((kind, namespace, name), {**seen, "owner": owner_uid})


def child_problem(error: Exception) -> tuple[str, str]:
    """The reason and message of a child that could not be made or changed: a name held by an
    object not ours (NameConflict), or the API server's refusal in its own words (ChildRejected)."""
    if isinstance(error, kube.NameConflict):
        return r.NAME_CONFLICT, str(error)
    assert isinstance(error, kube.Refused)
    if error.method == "GET":  # what the child needs (its Secret), refused to the operator (RBAC)
        return r.CHILD_REJECTED, f"the API server refused to let the operator read {error.path} " \
                                 f"({error.status}): {error.message}"
    verb = {"POST": "create", "PATCH": "change", "DELETE": "delete"}.get(error.method, error.method)
    return r.CHILD_REJECTED, f"the API server refused to {verb} a child ({error.status}): {error.message}"


def create_child(path: str, manifest: dict[str, Any], owner: Any, *, lookup: str = "list") -> dict[str, Any] | None:
    """:func:`kube.create`, counted in the operator's metrics when the API server made a new child."""
    created = kube.create(path, manifest, owner, lookup=lookup)
    if created is not None:
        metrics.count_child_created(str(manifest.get("kind") or kube.KINDS.get(path.rsplit("/", 1)[-1], "")))
    return created


CHILD_PROBLEMS = (kube.NameConflict, kube.Refused)
"""What a reconcile turns into a condition instead of failing: see :func:`child_problem`."""


def event_on_phase_change(body: Any, old: str | None, new: str | None, message: str) -> None:
    """An Event when a resource enters a phase worth telling (not the initial Pending)."""
    if new and new != old and new != "Pending":
        kopf.event(body, type="Warning" if new == "Failed" else "Normal", reason=new, message=message)


def invalid_spec(runtime: Runtime, body: kopf.Body, patch: kopf.Patch, error: ValidationError,
                 phase: str | None = None) -> Next:
    """Ready=False, reason InvalidSpec, naming the field (a Model or OnlineService whose spec passes the
    schema but not Galley's checks, such as a flavor the catalogue lacks). Looked at again every
    interval: a chart upgrade may add the flavor."""
    message = field_problem(error)
    status = dict(body.get("status") or {})
    conditions = [Condition.model_validate(c) for c in status.get("conditions") or []]
    conditions = set_condition(conditions, r.READY, "False", r.INVALID_SPEC, message,
                               generation=body.meta.get("generation"))
    update: dict[str, Any] = {
        "conditions": without_empty([c.model_dump(mode="json", by_alias=True) for c in conditions]),
        "observedGeneration": body.meta.get("generation")}
    if phase is not None:
        update["phase"] = phase
        event_on_phase_change(body, status.get("phase"), phase, message)
    metrics.record_resource(str(body.get("kind")), body.metadata.namespace or "default", body.metadata.name or "",
                            phase or "NotReady", _usage_of(status))
    return Next(runtime.settings.interval, write_status(body, patch, update))


def _usage_of(status: dict[str, Any]) -> Usage | None:
    """The usage a status holds, or None where it holds none (or none that reads)."""
    try:
        return Usage.model_validate(status["usage"]) if status.get("usage") else None
    except ValidationError:
        return None
