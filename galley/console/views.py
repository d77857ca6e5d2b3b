"""What the console's pages show, read through the backend and from storage.

Everything here is read with the backend's calls (the ones ``galley get``, ``describe`` and
``logs`` use) and, for curves and package details, from the job's and the package's files in
storage. A file that cannot be read is shown as a sentence saying why, never as an error page.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from galley import storage
from galley.api.resources import Model, OnlineService, Resource, TrainingJob
from galley.commands import ResourceSource, rows
from galley.commands import running_now as _running_now
from galley.control.progress import epoch_records
from galley.model import config as package_config

R = TypeVar("R", bound=Resource)
LOG_TAIL_LINES = 40


class Backend(ResourceSource, Protocol):
    """The calls the console makes: the CLI's (``galley.local.backend.EmbeddedBackend`` on this
    machine, ``galley.cluster.ClusterStore`` on a cluster)."""

    def logs(self, reference: str, tail: int | None = None) -> str: ...

    def stop(self, name: str) -> str: ...

    def start(self, name: str) -> str: ...

    def create(self, resource: Resource) -> str: ...

    def storage_credentials(self, resource: Resource) -> dict[str, str] | None: ...

    def storage_unreadable(self, uri: str) -> str | None: ...

    def dataset_unreadable(self, uri: str) -> str | None:
        """Why a data set at ``uri`` is not inspected from here, or None."""
        ...

    def service_request(self, name: str, method: str, path: str, body: bytes | None = None,
                        headers: dict[str, str] | None = None) -> tuple[int, str, bytes]: ...


@dataclass
class Listing:
    """One kind's table: the header and rows ``galley get`` prints."""

    kind: str
    path: str
    header: list[str]
    rows: list[list[str]]


def running_now(backend: Backend) -> str:
    """The overview's first line, as ``galley get`` ends: what runs (and bills) now, or nothing running."""
    return _running_now(backend)


def listings(backend: Backend) -> list[Listing]:
    found = []
    for cls, path in ((TrainingJob, "trainingjobs"), (Model, "models"), (OnlineService, "services")):
        table = rows(cls, backend)
        found.append(Listing(cls.PLURAL, path, table[0] if table else [], table[1:]))
    return found


def _read(backend: Backend, resource: Resource, uri: str) -> str:
    reason = backend.storage_unreadable(uri)
    if reason is not None:
        raise storage.StorageError(reason)
    with storage.using_credentials(backend.storage_credentials(resource)):
        return storage.read_text(uri)


def history(backend: Backend, job: TrainingJob) -> tuple[list[dict[str, Any]], str]:
    """Per-epoch records and where they came from: ``<logs>/metrics.jsonl`` when storage can be
    read from here, else the epoch lines of the trainer's log."""
    try:
        text = _read(backend, job, storage.join(job.logs_uri, "metrics.jsonl"))
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
        return [r for r in records if isinstance(r, dict) and "epoch" in r], "metrics.jsonl"
    except (storage.StorageError, ValueError, RecursionError):  # JSONDecodeError, too many digits, too deep
        pass
    try:
        log = backend.logs(f"tj/{job.name}")
    except (LookupError, RuntimeError, OSError):
        return [], "no record yet"
    return epoch_records(log), "the trainer's log"


def series(records: list[dict[str, Any]], key: str) -> list[float | None]:
    """One curve: the key's value per epoch, None where an epoch has none (eval skipped)."""
    values: list[float | None] = []
    for record in records:
        value = record.get(key)
        try:
            values.append(float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None)
        except OverflowError:  # an integer beyond a float's range, from a crafted metrics.jsonl
            values.append(None)
    return values


@dataclass
class PackageView:
    """A model package's config.json and metrics.json, or why they could not be read."""

    uri: str | None
    config: package_config.PackageConfig | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None


def package_of(backend: Backend, resource: Resource, uri: str | None) -> PackageView:
    if not uri:
        return PackageView(None, problem="no package yet")
    reason = backend.storage_unreadable(uri)
    if reason is not None:
        return PackageView(uri, problem=reason)
    try:
        with storage.using_credentials(backend.storage_credentials(resource)):
            config = package_config.read_config(uri)
    except package_config.PackageError as error:
        return PackageView(uri, problem=str(error))
    try:
        metrics = json.loads(_read(backend, resource, storage.join(uri, package_config.METRICS)))
    except RecursionError:
        return PackageView(uri, config, problem=f"{package_config.METRICS}: nested too deeply to be read")
    except (storage.StorageError, ValueError) as error:  # JSONDecodeError, or a number of too many digits
        return PackageView(uri, config, problem=f"{package_config.METRICS}: {error}")
    return PackageView(uri, config, metrics if isinstance(metrics, dict) else {})


def report_html(backend: Backend, model: Model) -> str | None:
    """The package's evaluation report (misclassified photos included), or None."""
    uri = model.status.uri if model.status else None
    if not uri:
        return None
    try:
        return _read(backend, model, storage.join(uri, package_config.REPORT))
    except storage.StorageError:
        return None


def log_tail(backend: Backend, resource: Resource, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return backend.logs(f"{resource.KIND.lower()}/{resource.name}", lines)
    except (LookupError, RuntimeError, OSError) as error:
        return f"(no log: {error})"
    except Exception as error:  # the API server's answer (kubernetes ApiException): shown, not raised
        return f"(no log: {type(error).__name__}: {getattr(error, 'reason', error)})"


def models_of(backend: Backend, job: TrainingJob) -> list[Model]:
    return [m for m in backend.all(Model) if m.spec.source.training_job == job.name]


def services_of(backend: Backend, model: Model) -> list[OnlineService]:
    return [s for s in backend.all(OnlineService) if s.spec.model == model.name]


# -- the Data page ------------------------------------------------------------------------------

DATA_CACHE_SECONDS = 300.0
"""How long a data set's inspection is reused (decoding and grouping take seconds to minutes)."""
DATA_HYPERPARAMETERS = ("image_size", "seed", "near_duplicates", "near_duplicate_threshold", "max_bad_fraction",
                        "cache_images", "eval_batch_size", "num_workers")
"""The hyperparameters the trainer's data path reads (``preparation.sort_photos``): the Data page
takes these by name, and leaves the rest of the create form's fields alone."""


@dataclass
class DataQuery:
    """What the Data page was asked to look at (the create form's fields, or its own)."""

    uri: str
    format: str = "auto"
    algorithm: str = "mobilenet_v2"
    secret: str = ""
    hyperparameters: dict[str, str] = field(default_factory=dict)

    def key(self) -> tuple[Any, ...]:
        return self.uri, self.format, self.algorithm, self.secret, tuple(sorted(self.hyperparameters.items()))

    def params(self) -> dict[str, str]:
        """The query string that asks for the same data set again (thumbnails, links)."""
        found = {"uri": self.uri, "format": self.format, "algorithm": self.algorithm}
        return {**found, **({"secret": self.secret} if self.secret else {}), **self.hyperparameters}


@dataclass
class DataView:
    """The inspection of a data set, or why there is none."""

    query: DataQuery
    report: Any = None
    """A :class:`galley.trainer.inspection.Inspection`."""
    problem: str | None = None


class DataSets:
    """Inspections of the data sets asked for lately, so that the page's thumbnails and a reload
    do not read and decode the whole set again. The trainer's code is imported on first use:
    the console's own modules never import it."""

    def __init__(self, backend: Backend, keep: int = 8) -> None:
        self.backend = backend
        self.keep = keep
        self._found: dict[tuple[Any, ...], tuple[float, DataView]] = {}
        self._lock = threading.Lock()

    def inspect(self, query: DataQuery, *, fresh: bool = False) -> DataView:
        """The inspection of ``query``'s data set (from the last minutes unless ``fresh``)."""
        with self._lock:
            cached = self._found.get(query.key())
        if cached is not None and not fresh and time.monotonic() - cached[0] < DATA_CACHE_SECONDS:
            return cached[1]
        view = self._inspect(query)
        with self._lock:
            self._found[query.key()] = (time.monotonic(), view)
            while len(self._found) > self.keep:
                self._found.pop(min(self._found, key=lambda k: self._found[k][0]))
        return view

    def _inspect(self, query: DataQuery) -> DataView:
        from galley.trainer import data, inspection

        try:
            job = inspection.job_for(query.uri, query.format, algorithm=query.algorithm, secret=query.secret or None,
                                     hyperparameters=query.hyperparameters)
        except inspection.InspectError as error:
            return DataView(query, problem=str(error))
        reason = self.backend.dataset_unreadable(query.uri)
        if reason is not None:
            return DataView(query, problem=reason)
        try:
            with storage.using_credentials(self.backend.storage_credentials(job)):
                report = inspection.inspect(query.uri, query.format, algorithm=query.algorithm,
                                            split=job.spec.dataset.split, hyperparameters=query.hyperparameters)
        except inspection.InspectError as error:
            return DataView(query, problem=str(error))
        except (storage.StorageError, data.DatasetError) as error:
            return DataView(query, problem=f"cannot read the data set: {error}")
        return DataView(query, report)

    def thumbnail(self, query: DataQuery, source: str) -> bytes:
        """A small JPEG of ``source``, which must be one of the data set's photos: LookupError when it
        is not (a path of the request is never opened as it is), ValueError when it cannot be decoded."""
        from galley.trainer import inspection

        view = self.inspect(query)
        if view.report is None or source not in view.report.sources():
            raise LookupError("not a photo of this data set")
        job = inspection.job_for(query.uri, query.format, secret=query.secret or None)
        with storage.using_credentials(self.backend.storage_credentials(job)):
            return inspection.thumbnail(source)
