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


def request(method: str, path: str, body: Any = None,
            content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
    """One API call, JSON in and out; ``(status, object)``. Errors other than 404 and 409 raise.

    Goes below the generated client: it would validate the body into its own models and back.
    """
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = content_type
    client_ = api()
    _, url, headers, payload, _ = client_.param_serialize(method, path, header_params=headers, body=body,
                                                          auth_settings=["BearerToken"])
    response = client_.call_api(method, url, headers, payload, _request_timeout=REQUEST_TIMEOUT)
    try:
        data = response.read()
    finally:
        response.response.release_conn()  # unpreloaded responses keep their connection until released
    if response.status >= 400 and response.status not in (404, 409):
        error = ApiException(status=response.status, reason=response.reason)
        error.body = data
        raise error
    return response.status, json.loads(data) if data else {}


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


def merge_patch(path: str, patch: dict[str, Any]) -> dict[str, Any]:
    status, patched = request("PATCH", path, patch, content_type="application/merge-patch+json")
    if status != 200:
        raise ApiException(status=status, reason=f"PATCH {path}")
    return patched


def namespaced(group: str, version: str, namespace: str, plural: str, name: str = "") -> str:
    """The API path of a namespaced collection, or of one object in it."""
    root = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    return f"{root}/namespaces/{namespace}/{plural}" + (f"/{name}" if name else "")


class TtlCache(Generic[T]):
    """Values reused for ``ttl`` seconds: a burst of reconciles costs one read, not one each."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._items: dict[Any, tuple[float, T]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, load: Callable[[], T]) -> T:
        with self._lock:
            cached = self._items.get(key)
        if cached is not None and time.monotonic() - cached[0] < self.ttl:
            return cached[1]
        value = load()
        with self._lock:
            self._items[key] = (time.monotonic(), value)
        return value

    def forget(self, key: Any) -> None:
        with self._lock:
            self._items.pop(key, None)


class RecentlyCreated:
    """Children this process created in the last ``ttl`` seconds, as it created them.

    A watch cache can lag its own writes by a moment; without this, the reconcile that follows a
    creation would see no child and try to create it again (a wasted call answered 409).
    """

    def __init__(self, ttl: float = 30.0) -> None:
        self.ttl = ttl
        self._items: dict[tuple[str, str, str], tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def add(self, kind: str, namespace: str, name: str, seen_as: dict[str, Any]) -> None:
        now = time.monotonic()
        with self._lock:
            self._items = {key: item for key, item in self._items.items() if now - item[0] < self.ttl}
            self._items[(kind, namespace, name)] = (now, seen_as)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            item = self._items.get((kind, namespace, name))
        return item[1] if item is not None and time.monotonic() - item[0] < self.ttl else None

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """The child is gone (its DELETED event came): a reconcile must not take it as there."""
        with self._lock:
            self._items.pop((kind, namespace, name), None)


RECENTLY_CREATED = RecentlyCreated()


SECRET_CACHE_SECONDS = 30.0
_secrets = TtlCache[dict[str, str] | None](SECRET_CACHE_SECONDS)


def secret_values(namespace: str, name: str | None) -> dict[str, str] | None:
    """A Secret's data, decoded, for reading storage; None when unset. Values never leave memory."""
    if not name:
        return None

    def load() -> dict[str, str] | None:
        secret = read(namespaced("", "v1", namespace, "secrets", name))
        if secret is None:
            return None
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}

    values = _secrets.get((namespace, name), load)
    if values is None:
        _secrets.forget((namespace, name))  # look again next time: it may have been created since
        raise LookupError(f"Secret {name!r} not found in namespace {namespace!r}")
    return values
