"""``storage.secretRef`` in the embedded mode: the Secret's values from a local env file.

There is no API server to hold Secrets here, so a Secret named ``NAME`` is read from
``<home>/secrets/NAME.env``: ``KEY=VALUE`` lines, the format ``kubectl create secret generic
NAME --from-env-file=FILE`` takes, so one file serves both backends. Its values go into this
process's environment (the trainer, the model check and every predictor it starts inherit them)
and are never logged. Without the file the reference is ignored, loudly, and ``AWS_*`` from the
environment are used. One run reads at most one Secret: resources naming different ones are
refused, since one process has one environment.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from galley.api.resources import Resource

log = logging.getLogger("galley.local")


class ConflictingSecrets(ValueError):
    """The resources of one run name different Secrets."""


def secret_path(home: Path, name: str) -> Path:
    return home / "secrets" / f"{name}.env"


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines; blank lines and ``#`` comments are skipped, quotes around a value dropped."""
    values = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{path}:{number}: expected KEY=VALUE")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def secret_names(resources: Iterable[Resource]) -> set[str]:
    names = set()
    for resource in resources:
        storage = getattr(getattr(resource, "spec", None), "storage", None)
        if storage is not None and storage.secret_ref:
            names.add(storage.secret_ref)
    return names


def use_secret_of(resources: Iterable[Resource], home: Path) -> str | None:
    """Put the named Secret's values into the environment; which file was read, if any."""
    names = secret_names(resources)
    if not names:
        return None
    if len(names) > 1:
        raise ConflictingSecrets(f"these resources name different storage.secretRef values ({', '.join(sorted(names))})"
                                 "; the embedded mode runs them with one environment, so give them one Secret")
    name = names.pop()
    path = secret_path(home, name)
    if not path.is_file():
        log.warning("storage.secretRef %r names a Kubernetes Secret; the embedded mode reads it from %s, which does "
                    "not exist, so storage uses AWS_* from this environment", name, path)
        return None
    values = read_env_file(path)
    os.environ.update(values)
    log.info("storage.secretRef %r: %d value(s) from %s", name, len(values), path)
    return str(path)
