"""``galley get|describe|logs|stop|start|predict``, for both backends.

They read through :class:`ResourceSource`, which the embedded store (:mod:`galley.local`) and a
cluster namespace (:mod:`galley.cluster`) both are, so ``--cluster`` shows the same tables,
conditions, events and score tables as the embedded mode; the console calls the same functions.
"""

from __future__ import annotations

import json
import mimetypes
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import yaml

from galley import storage
from galley.api.resources import RESOURCES, Model, OnlineService, Resource, TrainingJob
from galley.control import reasons as r
from galley.control.conditions import find
from galley.control.services import start_request, stop_request
from galley.control.usage import running_now as _running_now
from galley.control.usage import summary
from galley.local.services import spawn_detached_supervisor
from galley.local.state import Store

KIND_ALIASES: dict[str, type[Resource]] = {}
for _cls in RESOURCES:
    for _alias in (_cls.KIND.lower(), _cls.PLURAL, _cls.KIND.lower() + "s", *_cls.SHORT_NAMES):
        KIND_ALIASES[_alias] = _cls


R = TypeVar("R", bound=Resource)


class ResourceSource(Protocol):
    """Where ``get`` and ``describe`` read resources: the local state folder or a cluster namespace."""

    @property
    def home(self) -> Path | str: ...

    @property
    def empty_hint(self) -> str: ...

    def all(self, cls: type[R]) -> list[R]: ...

    def get(self, cls: type[R], name: str) -> R | None: ...

    def events(self, kind: str, name: str) -> list[dict[str, str]]: ...


class NotFound(LookupError):
    """Nothing by that name in the local state."""


def _age(resource: Resource) -> str:
    created = (resource.metadata.model_extra or {}).get("creationTimestamp")
    if not created:
        return "-"
    seconds = int((datetime.now(UTC) - datetime.fromisoformat(created.replace("Z", "+00:00"))).total_seconds())
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _ready(resource: Resource, type_: str = r.READY, part: str = "status") -> str:
    status = getattr(resource, "status", None)
    condition = find(status.conditions, type_) if status else None
    return str(getattr(condition, part)) if condition else ("Unknown" if part == "status" else "-")


def _usage(resource: TrainingJob | OnlineService) -> str:
    """The USAGE column, as kubectl prints it from ``status.usage.summary``."""
    usage = resource.status.usage if resource.status else None
    return summary(usage) if usage is not None else "-"


def running_now(store: ResourceSource) -> str:
    """The one line that says what still bills: ``running now: ...`` or ``nothing running``."""
    return _running_now(store.all(TrainingJob), store.all(OnlineService)).line()


def rows(cls: type[Resource], store: ResourceSource, wide: bool = False) -> list[list[str]]:
    """Table rows as ``kubectl get`` prints them, header first; ``wide`` adds what the spec chose."""
    out: list[list[str]] = []
    for item in store.all(cls):
        if isinstance(item, TrainingJob):
            s = item.status
            accuracy = s.metrics.accuracy if s and s.metrics else None
            row = [item.name, (s.phase if s else None) or "Pending", f"{s.epoch or 0}/{s.epochs or '?'}" if s else "-",
                   "-" if accuracy is None else f"{accuracy:.4f}", _usage(item), _age(item)]
            extra = [item.spec.algorithm.name, item.spec.resources.flavor, str(item.spec.resources.nodes)]
        elif isinstance(item, Model):
            m = item.status
            row = [item.name, _ready(item), item.spec.version,
                   f"{m.metrics['accuracy']:.4f}" if m and "accuracy" in m.metrics else "-", _age(item)]
            extra = [(m.algorithm if m else None) or "-", (m.uri if m else None) or "-"]
        elif isinstance(item, OnlineService):
            o = item.status
            stop_at = f"{o.stop_at:%Y-%m-%dT%H:%M:%SZ}" if o and o.stop_at else "-"
            last_request = f"{o.last_request_time:%Y-%m-%dT%H:%M:%SZ}" if o and o.last_request_time else "-"
            row = [item.name, _ready(item), _ready(item, part="reason"), (o.url if o else None) or "-", stop_at,
                   last_request, _usage(item), _age(item)]
            extra = [item.spec.model, item.spec.flavor, item.spec.runtime]
        else:
            continue
        out.append(row + extra if wide else row)
    headers = {TrainingJob: (["NAME", "STATUS", "EPOCH", "ACCURACY", "USAGE", "AGE"], ["ALGORITHM", "FLAVOR", "NODES"]),
               Model: (["NAME", "READY", "VERSION", "ACCURACY", "AGE"], ["ALGORITHM", "URI"]),
               OnlineService: (["NAME", "READY", "REASON", "URL", "STOP-AT", "LAST-REQUEST", "USAGE", "AGE"],
                               ["MODEL", "FLAVOR", "RUNTIME"])}
    header, more = headers[cls]
    return [header + more if wide else header, *out] if out else []


def table(rows_: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows_) for i in range(len(rows_[0]))]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows_)


def get(store: ResourceSource, kind: str | None, wide: bool = False) -> str:
    kinds = [KIND_ALIASES[kind.lower()]] if kind else list(RESOURCES)
    sections = []
    for cls in kinds:
        found = rows(cls, store, wide)
        if found:
            sections.append((f"{cls.PLURAL}:\n" if not kind else "") + table(found))
    if not sections:
        return f"No resources found in {store.home} ({store.empty_hint}).\n{running_now(store)}"
    return "\n\n".join(sections) + "\n\n" + running_now(store)


def get_list(store: ResourceSource, kind: str | None, output: str) -> str:
    """The resources as ``kubectl get -o yaml|json`` prints them: a ``List`` of whole objects, status included."""
    kinds = [KIND_ALIASES[kind.lower()]] if kind else list(RESOURCES)
    listing = {"apiVersion": "v1", "kind": "List",
               "items": [item.to_manifest() for cls in kinds for item in store.all(cls)]}
    if output == "json":
        return json.dumps(listing, ensure_ascii=False, indent=2)
    return yaml.safe_dump(listing, allow_unicode=True, sort_keys=False).rstrip()


def lookup(store: ResourceSource, reference: str) -> Resource:
    """``NAME`` or ``KIND/NAME``."""
    if "/" in reference:
        kind, name = reference.split("/", 1)
        if kind.lower() not in KIND_ALIASES:
            raise NotFound(f"unknown kind {kind!r}; known: trainingjob (tj), model, onlineservice (osvc)")
        candidates = [KIND_ALIASES[kind.lower()]]
    else:
        name, candidates = reference, list(RESOURCES)
    for cls in candidates:
        found = store.get(cls, name)
        if found is not None:
            return found
    raise NotFound(f"{reference!r} not found in {store.home}; `galley get` lists what is there")


def describe(store: ResourceSource, reference: str) -> str:
    resource = lookup(store, reference)
    manifest = resource.to_manifest()
    lines = [f"Name:   {resource.name}", f"Kind:   {resource.KIND}", "Spec:"]
    lines += ["  " + line for line in json.dumps(manifest.get("spec", {}), ensure_ascii=False, indent=2).splitlines()]
    status = manifest.get("status", {})
    lines.append("Status:")
    for key, value in status.items():
        if key != "conditions":
            lines.append(f"  {key}: {json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else value}")
    conditions = status.get("conditions", [])
    if conditions:
        lines.append("Conditions:")
        lines.append(table([["  TYPE", "STATUS", "REASON", "LAST TRANSITION", "MESSAGE"]] + [
            ["  " + c["type"], c["status"], c["reason"], c["lastTransitionTime"], c.get("message", "")]
            for c in conditions]))
    events = store.events(resource.KIND, resource.name)[-10:]
    if events:
        lines.append("Events:")
        lines += [f"  {e['time']}  {e['reason']:<10} {e['message']}" for e in events]
    return "\n".join(lines)


def logs(store: Store, reference: str) -> str:
    resource = lookup(store, reference)
    if isinstance(resource, TrainingJob):
        try:
            return storage.read_text(storage.join(resource.logs_uri, "training.log"))
        except storage.StorageError:
            return f"TrainingJob {resource.name} has no log yet"
    path = store.log_path(resource.KIND, resource.name)
    if not path.exists() or not path.stat().st_size:
        return f"{resource.KIND} {resource.name} has no log yet"
    return path.read_text(encoding="utf-8", errors="replace")


def stop(store: Store, name: str) -> str:
    service = store.get(OnlineService, name)
    if service is None:
        raise NotFound(f"OnlineService {name!r} not found in {store.home}")
    store.patch_manifest(OnlineService.KIND, name, stop_request())
    if store.supervisor_pid(name) is None:
        from galley.local.services import Supervisor

        Supervisor(store, [name]).step()
    return f"OnlineService {name} stopping (spec.stopped: true); `galley start {name}` starts it again"


STOP_WAIT_SECONDS = 60
"""How long ``galley delete`` waits for a service's supervisor to stop its predictor."""


def _stopped(store: Store, name: str) -> bool:
    """The supervisor has stopped the service's predictor (it records that once the process is gone)."""
    service = store.get(OnlineService, name)
    return service is None or (service.status is not None and service.status.phase == "Stopped")


def output_locations(resource: Resource) -> list[str]:
    """What ``--purge-output`` would delete: a TrainingJob's output folder, and its log folder
    when that lies elsewhere."""
    if not isinstance(resource, TrainingJob):
        raise NotFound(f"--purge-output applies to a TrainingJob (its output and logs); {resource.KIND} "
                       f"{resource.name} has none")
    output = resource.spec.output.uri.rstrip("/") + "/"
    logs = resource.logs_uri.rstrip("/") + "/"
    return [output] if logs.startswith(output) else [output, logs]


def delete(store: Store, reference: str, purge_output: bool = False) -> str:
    """Stop what runs for the resource, then forget it. Its output and packages stay in storage
    unless ``purge_output`` (the CLI asks for confirmation first)."""
    resource = lookup(store, reference)
    purge = output_locations(resource) if purge_output else []
    kind, name = resource.KIND, resource.name
    supervisor = store.supervisor_pid(name) if kind == OnlineService.KIND else None
    if supervisor is not None:
        store.patch_manifest(kind, name, stop_request())
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        while store.supervisor_pid(name) is not None and not _stopped(store, name):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the supervisor of {name} (pid {supervisor}) did not stop its predictor "
                                   f"within {STOP_WAIT_SECONDS} s; nothing was deleted")
            time.sleep(0.2)
    store.delete(kind, name)
    if purge:
        removed = sum(storage.delete_tree(uri) for uri in purge)
        return f"{kind} {name} deleted, and {removed} file(s) under {' and '.join(purge)}"
    kept = f"; its output in {resource.spec.output.uri} is kept" if isinstance(resource, TrainingJob) else ""
    return f"{kind} {name} deleted{kept}"


def test_page_url(store: ResourceSource, reference: str) -> str:
    """The test page of a running OnlineService (``NAME`` or ``osvc/NAME``)."""
    resource = lookup(store, reference if "/" in reference else f"osvc/{reference}")
    if not isinstance(resource, OnlineService):
        raise NotFound(f"{resource.KIND} {resource.name} has no test page; an OnlineService has")
    status = resource.status
    if status is None or not status.url or status.phase != "Running":
        raise NotFound(f"OnlineService {resource.name} is not running; `galley start {resource.name}` starts it")
    return status.url


def request_start(store: Store, name: str) -> None:
    """Ask for a (re)start: ``spec.stopped: false`` and a new ``galley.dev/start`` annotation."""
    store.patch_manifest(OnlineService.KIND, name, start_request())


def start(store: Store, name: str) -> str:
    service = store.get(OnlineService, name)
    if service is None:
        raise NotFound(f"OnlineService {name!r} not found in {store.home}")
    request_start(store, name)
    if store.supervisor_pid(name) is None:
        pid = spawn_detached_supervisor(store, name)
        return (f"OnlineService {name} starting in the background (supervisor pid {pid}); "
                "`galley get osvc` shows its URL")
    return f"OnlineService {name} starting"


def multipart(paths: list[Path]) -> tuple[bytes, str]:
    """The images as the predictor's multipart upload (field ``images``); the body and its content type."""
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise NotFound(f"no such file: {', '.join(missing)}")
    boundary = uuid.uuid4().hex
    parts = []
    for path in paths:
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="{path.name}"\r\n'
                     f"Content-Type: {kind}\r\n\r\n".encode() + path.read_bytes() + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def predict(store: Store, target: str, images: list[Path]) -> list[dict[str, Any]]:
    """POST ``images`` to a service (by URL or by name) and return one answer per image."""
    url = target
    if not target.startswith(("http://", "https://")):
        service = store.get(OnlineService, target)
        if service is None:
            raise NotFound(f"OnlineService {target!r} not found in {store.home}; give a URL or a name")
        if service.status is None or not service.status.url or _ready(service) != "True":
            raise NotFound(f"OnlineService {target} is not running; `galley start {target}` starts it")
        url = service.status.url
    body, content_type = multipart(images)
    status, _, data = exchange(url, "POST", body, {"Content-Type": content_type})
    if status >= 400:
        raise RuntimeError(f"{url} answered {status}: {data.decode(errors='replace')}")
    answer = json.loads(data)
    return answer if isinstance(answer, list) else [answer]


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Turns every redirect into the HTTPError of its own 3xx answer."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_NO_REDIRECTS = urllib.request.build_opener(_RefuseRedirects)
_DIRECT = urllib.request.build_opener(_RefuseRedirects, urllib.request.ProxyHandler({}))
"""For a predictor this process reaches itself (on loopback, or a Service in its own cluster): no
proxy from the environment sees the uploads."""


def exchange(url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None,
             timeout: float = 60, direct: bool = False) -> tuple[int, str, bytes]:
    """One HTTP request: (status, content type, body), an HTTP error's answer included, not raised.
    A redirect is answered as it is, never followed: a predictor's answer cannot send the console
    or the CLI to another address. ``direct`` ignores HTTP_PROXY (a predictor this process reaches
    itself); otherwise, as for a URL a user gives, the environment's proxy is used."""
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with (_DIRECT if direct else _NO_REDIRECTS).open(request, timeout=timeout) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def running_url(store: ResourceSource, name: str, start_hint: str) -> str:
    """The URL of the running OnlineService ``name``, or :class:`NotFound` saying why there is none."""
    service = store.get(OnlineService, name)
    if service is None:
        raise NotFound(f"OnlineService {name!r} not found in {store.home}")
    if service.status is None or not service.status.url or service.status.phase != "Running":
        raise NotFound(f"OnlineService {name} is not running; {start_hint}")
    return service.status.url


def score_table(images: list[Path], answers: list[dict[str, Any]]) -> str:
    blocks = []
    for path, answer in zip(images, answers, strict=True):
        lines = [f"{path.name}: {answer['predicted_label']}"]
        for label, score in answer["scores"]:
            lines.append(f"  {label}\t{score:.4f}  {'█' * round(score * 30)}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1
