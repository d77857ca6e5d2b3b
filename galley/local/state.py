"""The embedded backend's store: resources, status, logs and process ids under one folder."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from galley.api.resources import BY_KIND, Resource

R = TypeVar("R", bound=Resource)
HOME_ENV = "GALLEY_HOME"


def default_home() -> Path:
    return Path(os.environ.get(HOME_ENV, ".galley"))


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)


class Store:
    """Resources by kind and name; status kept beside the manifest."""

    empty_hint = "start with `galley run -f DIR`"

    def __init__(self, home: Path | None = None):
        self.home = home or default_home()

    def _folder(self, kind: str) -> Path:
        return self.home / BY_KIND[kind].PLURAL

    def _manifest_path(self, kind: str, name: str) -> Path:
        return self._folder(kind) / f"{name}.json"

    def _status_path(self, kind: str, name: str) -> Path:
        return self._folder(kind) / f"{name}.status.json"

    def apply(self, resource: Resource) -> None:
        """Store the manifest (``kubectl apply``): generation grows when the spec changes."""
        path = self._manifest_path(resource.KIND, resource.name)
        manifest = resource.to_manifest()
        manifest.pop("status", None)
        metadata = manifest["metadata"]
        previous = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
        if previous is None:
            metadata["generation"] = 1
            metadata["creationTimestamp"] = f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}"
            metadata["uid"] = str(uuid.uuid4())  # as the API server gives one: what checkpoints are owned by
        else:
            metadata["creationTimestamp"] = previous["metadata"].get("creationTimestamp")
            metadata["uid"] = previous["metadata"].get("uid") or str(uuid.uuid4())
            changed = previous.get("spec") != manifest["spec"]
            metadata["generation"] = previous["metadata"].get("generation", 1) + (1 if changed else 0)
        _write_json(path, manifest)

    def get(self, cls: type[R], name: str) -> R | None:
        """The resource with its status, or None."""
        path = self._manifest_path(cls.KIND, name)
        if not path.exists():
            return None
        manifest = json.loads(path.read_text(encoding="utf-8"))
        status_path = self._status_path(cls.KIND, name)
        if status_path.exists():
            manifest["status"] = json.loads(status_path.read_text(encoding="utf-8"))
        return cls.model_validate(manifest)

    def all(self, cls: type[R]) -> list[R]:
        folder = self._folder(cls.KIND)
        names = sorted(p.name[: -len(".json")] for p in folder.glob("*.json")
                       if not p.name.endswith(".status.json")) if folder.exists() else []
        found = [self.get(cls, name) for name in names]
        return [r for r in found if r is not None]

    def save_status(self, resource: Resource, status: Any) -> None:
        _write_json(self._status_path(resource.KIND, resource.name),
                    status.model_dump(mode="json", by_alias=True, exclude_none=True))

    def patch_manifest(self, kind: str, name: str, change: dict[str, Any]) -> None:
        """Merge ``change`` into a stored manifest (``kubectl patch --type merge``)."""
        path = self._manifest_path(kind, name)
        manifest = json.loads(path.read_text(encoding="utf-8"))
        old_spec = json.dumps(manifest.get("spec"), sort_keys=True)
        _merge(manifest, change)
        if json.dumps(manifest.get("spec"), sort_keys=True) != old_spec:
            manifest["metadata"]["generation"] = manifest["metadata"].get("generation", 1) + 1
        _write_json(path, manifest)

    def delete(self, kind: str, name: str) -> None:
        """Forget the resource: its manifest, status, pid file and logs (never its storage)."""
        for path in (self._manifest_path(kind, name), self._status_path(kind, name),
                     self.home / "logs" / f"{kind.lower()}-{name}.log"):
            path.unlink(missing_ok=True)
        if kind == "OnlineService":
            self.pid_path(name).unlink(missing_ok=True)
            (self.home / "logs" / f"supervisor-{name}.log").unlink(missing_ok=True)

    def log_path(self, kind: str, name: str) -> Path:
        path = self.home / "logs" / f"{kind.lower()}-{name}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def pid_path(self, name: str) -> Path:
        return self.home / "run" / f"{name}.pid"

    def supervisor_pid(self, name: str) -> int | None:
        """The pid of the live supervisor of service ``name``, or None."""
        path = self.pid_path(name)
        try:
            pid = int(path.read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def record_event(self, resource: Resource, reason: str, message: str) -> None:
        path = self.home / "events.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as stream:
            stream.write(json.dumps({"time": f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}", "kind": resource.KIND,
                                     "name": resource.name, "reason": reason, "message": message},
                                    ensure_ascii=False) + "\n")

    def events(self, kind: str, name: str) -> list[dict[str, str]]:
        path = self.home / "events.jsonl"
        if not path.exists():
            return []
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [e for e in rows if e["kind"] == kind and e["name"] == name]


def _merge(target: dict[str, Any], change: dict[str, Any]) -> None:
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        elif value is None:
            target.pop(key, None)
        else:
            target[key] = value
