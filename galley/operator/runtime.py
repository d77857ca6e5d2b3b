"""What one run of the operator keeps between reconciles, made when it starts and passed along.

Nothing here is created at import: the startup handler makes one :class:`Runtime` and puts it in
kopf's ``memo``, which kopf hands to every handler (as it hands ``settings``), and the handlers
pass it to the reconciles. Two operators in one process (tests), or an operator restarted in
place, share no cache, lock or schedule.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, cast

import kopf

from galley.model.config import PackageConfig
from galley.operator import kube
from galley.operator.background import BackgroundReads
from galley.operator.settings import OperatorSettings
from galley.operator.workqueue import Key, WorkQueue

RECENTLY_CREATED_SECONDS = 30.0
SECRET_CACHE_SECONDS = 30.0


@dataclass
class Seen:
    """The latest body of every Galley resource, and kopf's context and indexes to reconcile it in."""

    bodies: dict[Key, tuple[dict[str, Any], Any]] = field(default_factory=dict)
    indexes: Any = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    written: dict[Key, tuple[float, str, dict[str, Any]]] = field(default_factory=dict)
    """Status fields this operator wrote lately, per resource: (when, uid, fields)."""
    failures: dict[Key, int] = field(default_factory=dict)
    """Consecutive failed reconciles per resource, for the retry backoff (reset by a success)."""
    depends_on: dict[Key, Key] = field(default_factory=dict)
    """The resource whose status each resource reads: a Model's TrainingJob, a service's Model."""
    dependents: dict[Key, set[Key]] = field(default_factory=dict)
    """The other way round: who reads each resource's status."""

    def track_dependency(self, key: Key, target: Key | None) -> None:
        """Record (under ``lock``) that ``key`` now reads ``target``'s status (None: nothing)."""
        old = self.depends_on.pop(key, None)
        if old is not None and old != target:
            readers = self.dependents.get(old)
            if readers is not None:
                readers.discard(key)
                if not readers:
                    del self.dependents[old]
        if target is not None:
            self.depends_on[key] = target
            self.dependents.setdefault(target, set()).add(key)


@dataclass
class Runtime:
    """The operator's settings, work queue, caches and the resources it has seen."""

    settings: OperatorSettings
    queue: WorkQueue
    recent: kube.TtlCache[dict[str, Any]]
    """Children this process created lately, keyed (kind, namespace, name), as it created them.

    A watch cache can lag its own writes by a moment; without this, the reconcile that follows a
    creation would see no child and try to create it again (a wasted call answered 409). A child's
    DELETED event forgets it."""
    secrets: kube.TtlCache[dict[str, str]]
    package_configs: kube.TtlCache[tuple[PackageConfig | None, str | None, bool]]
    """Package reads reused for one status interval: a resource's own status write re-runs its reconcile."""
    progress_records: BackgroundReads[dict[str, Any]]
    """Running trainers' progress records, read again in the background once an interval old."""
    kserve_installed: kube.TtlCache[bool]
    seen: Seen = field(default_factory=Seen)
    seen_children: dict[tuple[str, str | None, str], Any] = field(default_factory=dict)
    """What each child last showed of the fields its owner reads: other changes need no reconcile."""

    @classmethod
    def create(cls, settings: OperatorSettings | None = None) -> Runtime:
        settings = settings or OperatorSettings()
        return cls(settings=settings, queue=WorkQueue(),
                   recent=kube.TtlCache(RECENTLY_CREATED_SECONDS), secrets=kube.TtlCache(SECRET_CACHE_SECONDS),
                   package_configs=kube.TtlCache(settings.interval),
                   progress_records=BackgroundReads(settings.interval),
                   kserve_installed=kube.TtlCache(settings.kserve_check_seconds))

    def secret_values(self, namespace: str, name: str | None) -> dict[str, str]:
        """A Secret's data, decoded, for reading storage; empty (anonymous access) when no Secret is
        named. Values never leave memory."""
        return kube.secret_values(self.secrets, namespace, name)


MEMO_KEY = "galley"


def of(memo: kopf.Memo) -> Runtime:
    """The runtime the startup handler put in kopf's memo (every handler's ``memo`` holds it)."""
    return cast(Runtime, memo[MEMO_KEY])
