"""The operator's Prometheus metrics, served on ``/metrics`` (``GALLEY_METRICS_PORT``).

A platform team needs to see, without reading logs, whether reconciles fail or slow down, whether
the work queue backs up, what the operator creates and stops, and what runs (and bills) now. The
counters are bumped where those things happen (the reconcilers, the work queue); the gauges of
resources by phase and of what runs now are computed at each scrape from the last status each
reconcile decided, with the same code as ``galley get``'s last line (:mod:`galley.control.usage`).

The metrics are the process's: one operator per process serves one ``/metrics``. They live in a
registry of their own, so importing Galley elsewhere adds nothing to that process's default one.
Every function here is cheap and never raises into a reconcile.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Iterable
from typing import Any

import kopf
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from galley.api.meta import GROUP, VERSION
from galley.api.resources import Usage
from galley.control.usage import held_now

REGISTRY = CollectorRegistry(auto_describe=True)
KINDS = {"trainingjobs": "TrainingJob", "models": "Model", "onlineservices": "OnlineService"}
"""The kinds Galley reconciles, by the plural a work-queue key carries."""

RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds: a reconcile reads caches (milliseconds); storage reads and API writes take longer."""

RECONCILES = Counter("galley_reconciles", "Reconciles run, by kind and result (success, error)",
                     ["kind", "result"], registry=REGISTRY)
RECONCILE_SECONDS = Histogram("galley_reconcile_duration_seconds", "Time one reconcile took, status write included",
                              ["kind", "result"], buckets=RECONCILE_BUCKETS, registry=REGISTRY)
QUEUE_DEPTH = Gauge("galley_workqueue_depth", "Resources waiting in the work queue for a worker", registry=REGISTRY)
RETRIES = Counter("galley_workqueue_retries", "Reconciles put back with a backoff after a failure, by kind",
                  ["kind"], registry=REGISTRY)
CHILDREN_CREATED = Counter("galley_children_created", "Children the operator created, by their kind (Job, "
                           "Deployment, Service, Ingress, InferenceService)", ["kind"], registry=REGISTRY)
STOPS = Counter("galley_service_stops", "OnlineServices stopped, by reason (AutoStopped, IdleStopped, "
                "StoppedByUser)", ["reason"], registry=REGISTRY)
METRICS = ("galley_reconciles_total", "galley_reconcile_duration_seconds", "galley_workqueue_depth",
           "galley_workqueue_retries_total", "galley_children_created_total", "galley_service_stops_total",
           "galley_resources", "galley_running_training_jobs", "galley_running_gpus", "galley_running_services",
           "galley_running_cores")
"""Every metric family the operator exports (histograms add _bucket, _sum and _count)."""


for _name in KINDS.values():  # every series exists from the start, so a rate() over it reads 0, not nothing
    RETRIES.labels(_name)
    for _result in ("success", "error"):
        RECONCILES.labels(_name, _result)
        RECONCILE_SECONDS.labels(_name, _result)
for _reason in ("AutoStopped", "IdleStopped", "StoppedByUser"):
    STOPS.labels(_reason)
for _child in ("Job", "Service", "Deployment", "Ingress", "InferenceService"):
    CHILDREN_CREATED.labels(_child)


def _kind(kind: str) -> str:
    return KINDS.get(kind, kind)


def observe_reconcile(kind: str, result: str, seconds: float) -> None:
    """One reconcile of ``kind`` (``TrainingJob`` or the plural ``trainingjobs``) ended with
    ``result`` (``success`` or ``error``) after ``seconds``, its status write included."""
    RECONCILES.labels(_kind(kind), result).inc()
    RECONCILE_SECONDS.labels(_kind(kind), result).observe(max(0.0, seconds))


def set_queue_depth(depth: int) -> None:
    """How many resources wait for a worker now (not counting those being reconciled)."""
    QUEUE_DEPTH.set(depth)


def count_retry(kind: str) -> None:
    """A failed reconcile of ``kind`` was put back in the queue with a backoff."""
    RETRIES.labels(_kind(kind)).inc()


def count_child_created(kind: str) -> None:
    """The API server accepted a new child of ``kind`` (``Job``, ``Deployment``, ...)."""
    CHILDREN_CREATED.labels(kind).inc()


def count_stop(reason: str) -> None:
    """An OnlineService stopped, for ``reason`` (AutoStopped, IdleStopped, StoppedByUser)."""
    STOPS.labels(reason).inc()


_lock = threading.Lock()
_resources: dict[tuple[str, str, str], tuple[str, Usage | None]] = {}
"""(kind, namespace, name) -> the phase and usage its last reconcile decided."""


def record_resource(kind: str, namespace: str, name: str, phase: str | None, usage: Usage | None = None) -> None:
    """What a reconcile decided of a resource: its phase (a Model's is Ready or NotReady) and usage."""
    with _lock:
        _resources[(_kind(kind), namespace, name)] = (phase or "Pending", usage)


def forget_resource(kind: str, namespace: str, name: str) -> None:
    """The resource is gone: it counts in no gauge any more."""
    with _lock:
        _resources.pop((_kind(kind), namespace, name), None)


class _State(Collector):
    """Resources by kind and phase, and what runs now, computed at each scrape."""

    def collect(self) -> Iterable[Any]:
        with _lock:
            known = list(_resources.items())
        phases = GaugeMetricFamily("galley_resources", "Galley resources by kind and phase, as last reconciled",
                                   labels=["kind", "phase"])
        for (kind, phase), count in sorted(Tally((key[0], phase) for key, (phase, _) in known).items()):
            phases.add_metric([kind, phase], count)
        yield phases
        now = held_now([u for (kind, _, _), (_, u) in known if kind == "TrainingJob"],
                       [u for (kind, _, _), (_, u) in known if kind == "OnlineService"])
        for name, text, value in (
                ("galley_running_training_jobs", "TrainingJobs whose trainer runs now", now.training_jobs),
                ("galley_running_gpus", "GPUs the running TrainingJobs hold", now.gpus),
                ("galley_running_services", "OnlineServices whose predictor is Ready now", now.services),
                ("galley_running_cores", "CPU cores the running OnlineServices hold", now.cores)):
            yield GaugeMetricFamily(name, text, value=value)


REGISTRY.register(_State())


def serve(port: int, address: str = "0.0.0.0") -> int:
    """Serve ``/metrics`` on ``port`` (0: any free port) in a daemon thread, on every address (Prometheus
    scrapes the pod from outside); the port it listens on."""
    disable_created_metrics()  # no *_created twin of every counter: this process is the operator's
    server, _ = start_http_server(port, address, registry=REGISTRY)
    return int(server.server_port)


def _resource_deleted(resource: kopf.Resource, namespace: str | None, name: str | None, **_: Any) -> None:
    """A Galley resource is gone: it leaves the gauges (kopf's DELETED event of it)."""
    forget_resource(resource.plural, namespace or "default", name or "")


for _plural in KINDS:
    kopf.on.event(GROUP, VERSION, _plural, id="metrics", when=lambda type, **_: type == "DELETED")(_resource_deleted)
