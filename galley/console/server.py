"""Starting the console: which backend, which address, which token."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from galley.api.flavors import FlavorCatalogue, default_catalogue
from galley.console.security import TOKEN_ENV, Guard, is_loopback, new_token

log = logging.getLogger("galley.console")


def cluster_catalogue(cluster: Any) -> FlavorCatalogue:
    """The flavors the chart installed, or the built-in ones where they cannot be read."""
    try:
        catalogue, where = cluster.flavor_catalogue()
    except Exception as error:  # no ConfigMap, or no right to list it: the forms still work
        log.warning("flavors: the built-in catalogue (%s)", error)
        return default_catalogue()
    log.info("flavors: %s", where)
    return catalogue


def choose_token(host: str, given: str | None) -> str | None:
    """The token changes need: the one given (flag or $GALLEY_CONSOLE_TOKEN); a new one when
    binding beyond loopback without one; none on loopback."""
    token = given or os.environ.get(TOKEN_ENV) or None
    if token is None and not is_loopback(host):
        token = new_token()
    return token


def demo_defaults(home: Path) -> dict[str, str]:
    """After ``galley demo``, the create form starts from its photos, so a newcomer can train again."""
    manifest = home / "demo" / "data" / "dataset.manifest"
    if not manifest.is_file():
        return {}
    return {"name": "food", "dataset": str(manifest.resolve()), "output": str((home / "output" / "food").resolve())}


def announce(where: str, host: str, port: int, token: str | None, *, terminal: bool) -> str:
    """The line printed at start. The token goes only to a terminal: printed to a pod's or a
    service's stdout it would land in a log that more people read than may use the console."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    address = f"http://{shown}:{port}/"
    if token is None:
        return f"Galley console for {where}: {address}  (Ctrl-C stops it)"
    if terminal:
        return f"Galley console for {where}: {address}?token={token}  (Ctrl-C stops it)"
    return (f"Galley console for {where}: {address}  (it needs its token: ${TOKEN_ENV}, or the chart's "
            "galley-console-token Secret; it is printed only to a terminal)")


def serve(backend: Any, catalogue: FlavorCatalogue, *, host: str, port: int, token: str | None, where: str,
          form_defaults: dict[str, str] | None = None, allowed_hosts: tuple[str, ...] = ()) -> None:
    import uvicorn

    from galley.console.app import create_app

    chosen = choose_token(host, token)
    if chosen is not None and not (token or os.environ.get(TOKEN_ENV)) and not sys.stdout.isatty():
        raise SystemExit(f"the console on {host} needs a token, and stdout is not a terminal to print a new one "
                         f"to: give --token or set ${TOKEN_ENV}")
    guard = Guard(chosen, allowed_hosts=(host, *allowed_hosts))
    app = create_app(backend, catalogue, guard, where=where, form_defaults=form_defaults)
    print(announce(where, host, port, guard.token, terminal=sys.stdout.isatty()), flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", limit_concurrency=64)
