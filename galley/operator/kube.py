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
        if response.status >= 400 and response.status not in (404, 409):
            error = ApiException(status=response.status, reason=response.reason)
            error.body = data
            raise error
        return response.status, json.loads(data) if data else {}
    raise AssertionError("unreachable")  # the last attempt returns or raises


def read(path: str) -> dict[str, Any] | None:
    """An object, or None when it does not exist."""
    status, found = request("GET", path)
    return None if status == 404 else found


def create(path: str, manifest: dict[str, Any], owner: Any) -> dict[str, Any] | None:
    """Create a child owned by ``owner``; the created object, or None when it was already there."""
    kopf.adopt(manifest, owner=owner)
    status, created = request("POST", path, manifest)
    if status == 404:
        raise ApiException(status=404, reason=f"POST {path}: not found")
    return None if status == 409 else created  # 409: an earlier reconcile created it


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


def merge_patch(path: str, patch: dict[str, Any]) -> dict[str, Any]:
    status, patched = request("PATCH", path, patch, content_type="application/merge-patch+json")
    if status != 200:
        raise ApiException(status=status, reason=f"PATCH {path}")
    return patched


def delete(path: str) -> None:
    """Delete an object; one already gone is fine."""
    request("DELETE", path)


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
