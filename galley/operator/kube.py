"""The operator's own Kubernetes calls: one shared connection pool, JSON in and out.

Reads of children come from kopf's indexes (watch caches, see :mod:`galley.operator.indexes`), so
what is left here is creating children, patching them, and the few reads no index holds. Responses
are parsed as plain JSON: the generated client's model objects cost more than the request.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import kopf
import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException

T = TypeVar("T")


class _Client:
    api: client.ApiClient | None = None


def configure_client() -> None:
    """Log in (in-cluster, else the kubeconfig) with a pool large enough for every handler thread."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = 32
    _Client.api = client.ApiClient(configuration)


def api() -> client.ApiClient:
    if _Client.api is None:
        _Client.api = client.ApiClient()
    return _Client.api


REQUEST_TIMEOUT = 60.0
ATTEMPTS = 4
"""Tries of one API call that met 429, a 5xx or a broken connection, before the reconcile fails
(and is retried with its own backoff)."""
FIRST_DELAY, MAX_DELAY = 0.25, 4.0


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _delay(attempt: int, retry_after: str | None) -> float:
    """Exponential from FIRST_DELAY, capped; a server's Retry-After (seconds) is honoured up to the cap."""
    if retry_after and retry_after.isdigit():
        return min(MAX_DELAY, float(retry_after))
    return min(MAX_DELAY, FIRST_DELAY * 2 ** attempt)


def request(method: str, path: str, body: Any = None,
            content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
    """One API call, JSON in and out; ``(status, object)``. Errors other than 404 and 409 raise.

    429, 5xx and broken connections are retried a few times with backoff: a create retried after
    a lost answer meets 409, which callers already read as "there". Goes below the generated
    client: it would validate the body into its own models and back.
    """
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = content_type
    client_ = api()
    _, url, headers, payload, _ = client_.param_serialize(method, path, header_params=headers, body=body,
                                                          auth_settings=["BearerToken"])
    for attempt in range(ATTEMPTS):
        last = attempt == ATTEMPTS - 1
        try:
            response = client_.call_api(method, url, headers, payload, _request_timeout=REQUEST_TIMEOUT)
        except urllib3.exceptions.HTTPError:
            if last:
                raise
            time.sleep(_delay(attempt, None))
            continue
        try:
            data = response.read()
        finally:
            response.response.release_conn()  # unpreloaded responses keep their connection until released
        if _retryable(response.status) and not last:
            time.sleep(_delay(attempt, response.getheader("Retry-After")))
            continue
        if response.status in REFUSED:
            raise Refused(method, path, response.status, response.reason, data)
        if response.status >= 400 and response.status not in (404, 409):
            error = ApiException(status=response.status, reason=response.reason)
            error.body = data
            raise error
        return response.status, _json_object(data)
    raise AssertionError("unreachable")  # the last attempt returns or raises


def _json_object(data: bytes) -> dict[str, Any]:
    """An answer's JSON object; {} for an empty or non-JSON one (the API server's 404 for a kind it
    does not serve is the text "404 page not found")."""
    if not data:
        return {}
    try:
        parsed = json.loads(data)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


REFUSED = (400, 403, 422)
"""Answers that say the request itself will not do: invalid (400, 422), or forbidden (403: RBAC,
a ResourceQuota, an admission policy). Trying the same request again changes nothing."""


class Refused(ApiException):
    """The API server refused a request (see :data:`REFUSED`); ``message`` is the server's own."""

    def __init__(self, method: str, path: str, status: int, reason: str | None, body: bytes) -> None:
        super().__init__(status=status, reason=reason)
        self.body = body.decode(errors="replace")
        self.method, self.path = method, path
        try:
            said = json.loads(body) if body else {}
        except ValueError:
            said = {}
        self.message = str(said.get("message") or reason or f"HTTP {status}") if isinstance(said, dict) \
            else str(reason or f"HTTP {status}")

    def __str__(self) -> str:
        return f"({self.status}) {self.method} {self.path}: {self.message}"


class NameConflict(Exception):
    """A child's name is held by an object that is not this owner's: it is left untouched."""

    def __init__(self, kind: str, name: str, owner_kind: str, owners: list[dict[str, Any]]) -> None:
        held = ", ".join(f"{o.get('kind')} {o.get('name')} (uid {o.get('uid')})" for o in owners)
        whose = f"its owner is {held}" if held else "it has no owner"
        super().__init__(f"{kind} {name!r} already exists and is not this {owner_kind}'s ({whose}); Galley "
                         f"leaves it untouched: delete or rename it, and this {owner_kind} will make its own")
        self.kind, self.name = kind, name


def owned_by(obj: dict[str, Any] | None, uid: str) -> bool:
    """Whether ``obj``'s ownerReferences name the owner with ``uid``: the one test of "ours"."""
    references = ((obj or {}).get("metadata") or {}).get("ownerReferences") or []
    return bool(uid) and any(ref.get("uid") == uid for ref in references)


def read(path: str) -> dict[str, Any] | None:
    """An object, or None when it does not exist."""
    status, found = request("GET", path)
    return None if status == 404 else found


def create(path: str, manifest: dict[str, Any], owner: Any, *, lookup: str = "list") -> dict[str, Any] | None:
    """Create a child owned by ``owner``; the created object, or None when it was already there, ours.

    A 409 (the name is taken) is ours only when the object holding the name names ``owner``'s uid
    in its ownerReferences (an earlier reconcile made it, or a retried create whose first answer was
    lost); otherwise :class:`NameConflict`, and nothing is changed. The holder is read by ``list``
    with a field selector, or by ``get`` where the operator may only get (``lookup="get"``).
    Raises :class:`Refused` with the server's message when the child is refused (422, quota 403).
    """
    kopf.adopt(manifest, owner=owner)
    status, created = request("POST", path, manifest)
    if status == 404:  # no such collection: the kind is not served here (KServe not installed), or no namespace
        kind = manifest.get("kind") or _kind_of(path)
        said = f"this API server serves no {kind} at {path}: is its CustomResourceDefinition installed?"
        raise Refused("POST", path, 404, "NotFound", json.dumps({"message": said}).encode())
    if status != 409:
        return created
    name = manifest["metadata"]["name"]
    holder = read(f"{path}/{name}") if lookup == "get" else _listed(path, name)
    owner_meta = owner.get("metadata") or {}
    if holder is None or owned_by(holder, owner_meta.get("uid", "")):
        return None  # ours; or deleted since, and the next reconcile creates it
    raise NameConflict(manifest.get("kind") or _kind_of(path), name, owner.get("kind") or "owner",
                       list((holder.get("metadata") or {}).get("ownerReferences") or []))


KINDS = {"jobs": "Job", "services": "Service", "deployments": "Deployment", "ingresses": "Ingress",
         "inferenceservices": "InferenceService"}
"""The kinds of the children, by plural (a list's items carry no ``kind``)."""


def _kind_of(collection: str) -> str:
    plural = collection.rstrip("/").rsplit("/", 1)[-1]
    return KINDS.get(plural, plural)


def _listed(collection: str, name: str) -> dict[str, Any] | None:
    """One object of a collection by name, read with ``list`` (the verb the operator's watches have)."""
    _, found = request("GET", f"{collection}?fieldSelector=metadata.name%3D{name}")
    items = found.get("items") or []
    return items[0] if items else None


def _without_nulls(value: Any) -> Any:
    """Each field's whole value is written, so a null inside (a merge patch's "remove") is left out."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def patch_status(path: str, uid: str, current: dict[str, Any], changed: dict[str, Any]) -> int:
    """Write the ``changed`` status fields (None removes one) of the object with ``uid`` only.

    A JSON patch whose first operation tests ``metadata.uid``: a reconcile of a deleted object
    can never write onto a new object of the same name (the API server answers 422). ``current``
    is the status the reconcile saw: without one, the whole status is set at once. Returns the
    HTTP status (404: the object is gone; 422: it is another object, or changed under the write).
    """
    operations: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/uid", "value": uid}]
    if not current:
        operations.append({"op": "add", "path": "/status", "value": _without_nulls(changed)})
    else:
        for key, value in changed.items():
            pointer = "/status/" + key.replace("~", "~0").replace("/", "~1")
            if value is not None:
                operations.append({"op": "add", "path": pointer, "value": _without_nulls(value)})
            elif key in current:
                operations.append({"op": "remove", "path": pointer})
    try:
        code, _ = request("PATCH", path + "/status", operations, content_type="application/json-patch+json")
    except ApiException as error:
        if error.status == 422:
            return 422
        raise
    return code


def patch_child(path: str, uid: str | None, patch: dict[str, Any] | list[dict[str, Any]], *,
                owner_kind: str = "OnlineService", lookup: str = "list") -> dict[str, Any]:
    """Patch the child with ``uid`` and no other object: a merge patch (a dict) carries the uid in
    its metadata, a JSON patch (a list) tests it first, so the API server refuses (422) to apply
    it to a successor of the name. Then the object now holding the name is looked at (by
    ``lookup``, as in :func:`create`): another owner's raises :class:`NameConflict`; gone, nothing
    is done (the next reconcile creates it). Other refusals raise :class:`Refused`.
    """
    if isinstance(patch, list):
        body: Any = ([{"op": "test", "path": "/metadata/uid", "value": uid}] if uid else []) + patch
        content_type = "application/json-patch+json"
    else:
        body = {**patch, "metadata": {**(patch.get("metadata") or {}), "uid": uid}} if uid else patch
        content_type = "application/merge-patch+json"
    try:
        status, patched = request("PATCH", path, body, content_type=content_type)
    except Refused as refused:
        if refused.status != 422 or not uid:
            raise
        collection, name = path.rsplit("/", 1)
        holder = read(path) if lookup == "get" else _listed(collection, name)
        if holder is not None and (holder.get("metadata") or {}).get("uid") == uid:
            raise  # the very child: the change itself was refused
        if holder is None:
            return {}
        raise NameConflict(_kind_of(collection), name, owner_kind,
                           list((holder.get("metadata") or {}).get("ownerReferences") or [])) from None
    if status == 404:
        return {}  # gone since it was seen; its DELETED event brings the reconcile that makes it again
    return patched


def delete(path: str, uid: str | None = None) -> None:
    """Delete an object; one already gone is fine. With ``uid``, only that very object (a
    precondition: a successor of the same name is not touched, the server answers 409)."""
    body = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": uid}} if uid else None
    request("DELETE", path, body)


def namespaced(group: str, version: str, namespace: str, plural: str, name: str = "") -> str:
    """The API path of a namespaced collection, or of one object in it."""
    root = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    return f"{root}/namespaces/{namespace}/{plural}" + (f"/{name}" if name else "")


class TtlCache(Generic[T]):
    """Values kept for ``ttl`` seconds: a burst of reconciles costs one read, not one each."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._items: dict[Any, tuple[float, T]] = {}
        self._lock = threading.Lock()
        self._pruned_at = time.monotonic()

    def get(self, key: Any, load: Callable[[], T]) -> T:
        """The kept value, or ``load()`` kept from now on (nothing is kept when it raises)."""
        item = self._fresh(key)
        if item is not None:
            return item[1]  # may be None itself: "no progress record yet" is kept too
        value = load()
        self.put(key, value)
        return value

    def peek(self, key: Any) -> T | None:
        """The kept value, or None."""
        item = self._fresh(key)
        return item[1] if item is not None else None

    def _fresh(self, key: Any) -> tuple[float, T] | None:
        with self._lock:
            item = self._items.get(key)
        return item if item is not None and time.monotonic() - item[0] < self.ttl else None

    def put(self, key: Any, value: T) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._pruned_at > self.ttl:  # drop expired keys, at most once per ttl
                self._items = {k: item for k, item in self._items.items() if now - item[0] < self.ttl}
                self._pruned_at = now
            self._items[key] = (now, value)

    def forget(self, key: Any) -> None:
        with self._lock:
            self._items.pop(key, None)


def secret_values(cache: TtlCache[dict[str, str]], namespace: str, name: str | None) -> dict[str, str]:
    """A Secret's data, decoded (kept in ``cache`` for a while), for reading storage; empty
    (anonymous access) when no Secret is named. Values never leave memory."""
    if not name:
        return {}

    def load() -> dict[str, str]:
        secret = read(namespaced("", "v1", namespace, "secrets", name))
        if secret is None:  # not kept: the next reconcile looks again, it may have been created since
            raise LookupError(f"Secret {name!r} not found in namespace {namespace!r}")
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}

    return cache.get((namespace, name), load)
