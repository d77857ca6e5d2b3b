"""Who may reach the console, and who may change things through it.

* Every request's ``Host`` must name this console: a loopback name, an IP literal, the ``--host``
  name, or an ``--allowed-host``. A web page elsewhere that rebinds its own DNS name to 127.0.0.1
  sends its own name, so it gets 421 and never reads a page (an IP literal cannot be rebound).
* Bound to loopback (the default), reading and changing need nothing more than reaching the port,
  as with ``galley`` itself on this machine.
* With a token (always, when bound beyond loopback), every request needs it, reads included:
  given once as ``?token=`` (the address the console prints), it is kept in an HttpOnly,
  SameSite=Strict cookie; scripts send ``Authorization: Bearer <token>``.
* Whatever the binding, a change whose ``Origin`` is another site (or ``null``: a sandboxed
  frame, a no-referrer page) is refused, so a web page open in the same browser cannot press Stop
  for the user.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.requests import Request

COOKIE = "galley_console_token"
TOKEN_ENV = "GALLEY_CONSOLE_TOKEN"
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
OPEN_PATHS = ("/healthz", "/static/")
"""Reached without the token: the kubelet's probe, and the style sheet of the page that asks for it."""


class Refused(Exception):
    """A change that may not be made; the message says what is missing."""


class NeedsToken(Exception):
    """A request to a console with a token that did not carry it (401)."""


class WrongHost(Exception):
    """A request whose ``Host`` names something other than this console (421)."""


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


_HOST_HEADER = re.compile(r"(?:\[(?P<ipv6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9._-]+))(?::\d{1,5})?")
"""A ``Host`` header as browsers send it: a name or address, or a bracketed IPv6 address, and a port."""


def host_name(header: str) -> str:
    """The name in a ``Host`` header, without port or IPv6 brackets, lowercased; "" for anything
    that is not a host and port (``127.0.0.1:80@evil.example``, ``[::1]evil``)."""
    match = _HOST_HEADER.fullmatch(header.lower())
    if match is None:
        return ""
    return match.group("ipv6") or match.group("name")


def new_token() -> str:
    return secrets.token_urlsafe(24)


class Guard:
    """Checks every request's ``Host`` and token, and every change's origin."""

    def __init__(self, token: str | None, allowed_hosts: Iterable[str] = ()) -> None:
        self.token = token
        self.allowed_hosts = frozenset(h.lower().rstrip(".") for h in allowed_hosts if h) | LOOPBACK_NAMES

    def token_matches(self, given: str | None) -> bool:
        return self.token is None or (given is not None and hmac.compare_digest(given.encode(), self.token.encode()))

    def check_host(self, request: Request) -> None:
        name = host_name(request.headers.get("host", "")).rstrip(".")
        if not name or not (_is_ip_literal(name) or name in self.allowed_hosts):
            raise WrongHost(f"this console does not answer to the host {name[:100]!r}: start it with "
                            "--allowed-host NAME to reach it by that name")

    def has_token(self, request: Request) -> bool:
        if self.token is None:
            return True
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip() or None
        return self.token_matches(request.cookies.get(COOKIE)) or (bearer is not None and self.token_matches(bearer))

    def check_read(self, request: Request) -> None:
        path = request.url.path
        if path == OPEN_PATHS[0] or path.startswith(OPEN_PATHS[1]):
            return
        if not self.has_token(request):
            raise NeedsToken("this console needs its token: open the address it printed at start (…/?token=…), "
                             "or send Authorization: Bearer <token>")

    def check_change(self, request: Request) -> None:
        """A change must come from the console's own pages: a browser names the page's origin (a
        sandboxed frame or a no-referrer page sends ``null``, which is refused too) or says
        ``Sec-Fetch-Site``. A request with neither is not from a browser page (curl, scripts),
        and needs the token where there is one."""
        origin = request.headers.get("origin")
        site = request.headers.get("sec-fetch-site")
        if origin is not None and (origin == "null" or urlsplit(origin).netloc != request.headers.get("host")):
            raise Refused(f"a change from {origin[:100]} is refused: open the console itself to make changes")
        if site is not None and site not in ("same-origin", "none"):
            raise Refused(f"a change from a {site[:40]} page is refused: open the console itself to make changes")
        if not self.has_token(request):
            raise Refused("this console needs its token for changes: open the address it printed at start "
                          "(…/?token=…), or send Authorization: Bearer <token>")
