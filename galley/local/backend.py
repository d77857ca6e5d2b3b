"""The embedded store with the actions users take on it, under the same names as on a cluster.

:class:`EmbeddedBackend` and :class:`galley.cluster.ClusterStore` answer the same calls (``all``,
``get``, ``events``, ``logs``, ``stop``, ``start``, ``create``, ``service_request``), so the CLI
and the console read and change resources one way whichever backend holds them.
"""

from __future__ import annotations

import logging
import subprocess
import sys

from galley import commands, storage
from galley.api.resources import Model, OnlineService, Resource, TrainingJob
from galley.local.secrets import read_env_file, secret_names, secret_path
from galley.local.state import Store

log = logging.getLogger("galley.local")


class AlreadyExists(ValueError):
    """``create`` of a name that is taken (the API server's 409)."""


class EmbeddedBackend(Store):
    """Resources on this machine; training runs in a background process, services under a supervisor."""

    def logs(self, reference: str, tail: int | None = None) -> str:
        text = commands.logs(self, reference)
        return "".join(text.splitlines(keepends=True)[-tail:]) if tail else text

    def stop(self, name: str) -> str:
        return commands.stop(self, name)

    def start(self, name: str) -> str:
        return commands.start(self, name)

    def create(self, resource: Resource) -> str:
        """``kubectl create``: store a new resource and carry it out in the background, as an
        operator would; a name already taken is refused and nothing changes."""
        if self.get(type(resource), resource.name) is not None:
            raise AlreadyExists(f"{resource.KIND} {resource.name!r} already exists")
        if isinstance(resource, OnlineService) and self.get(Model, resource.spec.model) is None:
            raise LookupError(f"spec.model: Model {resource.spec.model!r} is not defined")
        self.apply(resource)
        if isinstance(resource, TrainingJob):
            pid = spawn_background(self, "train", resource.name)
            return f"TrainingJob {resource.name} created; training in the background (pid {pid})"
        if isinstance(resource, Model):
            from galley.local.models import reconcile_model

            with storage.using_credentials(self.storage_credentials(resource)):
                reconcile_model(self, resource.name)
            return f"Model {resource.name} created"
        return commands.start(self, resource.name)

    def storage_credentials(self, resource: Resource) -> dict[str, str] | None:
        """The values of the Secret the resource names (``<home>/secrets/NAME.env``), for reading its
        storage without changing this process's environment; None to use the environment."""
        names = secret_names([resource])
        path = secret_path(self.home, names.pop()) if names else None
        return read_env_file(path) if path is not None and path.is_file() else None

    def storage_unreadable(self, uri: str) -> str | None:
        """None: everything the embedded mode runs is read from here, as it was written from here."""
        return None

    def dataset_unreadable(self, uri: str) -> str | None:
        """None: the embedded mode trains on this machine, so its data sets are read from here."""
        return None

    def service_request(self, name: str, method: str, path: str, body: bytes | None = None,
                        headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
        """One HTTP request to a running service's predictor: (status, content type, body)."""
        url = commands.running_url(self, name, "start it first")
        return commands.exchange(url + path.lstrip("/"), method, body, headers, direct=True)  # on loopback

def spawn_background(store: Store, action: str, name: str) -> int:
    """Run ``action`` (``train``) for ``name`` in a detached process that outlives the caller."""
    log_file = store.log_path("background", name).open("ab")
    process = subprocess.Popen([sys.executable, "-m", "galley.local.background", "--home", str(store.home),
                                action, name], stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    return process.pid
