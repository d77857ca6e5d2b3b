"""Who may change things through the console.

* Bound to loopback (the default), reading and changing need nothing more than reaching the port,
  as with ``galley`` itself on this machine.
* Bound anywhere else, a token is required for every change: given once as ``?token=`` (the
  address the console prints), it is kept in an HttpOnly, SameSite=Strict cookie.
* Whatever the binding, a change whose ``Origin`` is another site is refused, so a web page open
  in the same browser cannot press Stop for the user.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request

COOKIE = "galley_console_token"
TOKEN_ENV = "GALLEY_CONSOLE_TOKEN"


class Refused(Exception):
    """A change that may not be made; the message says what is missing."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    return secrets.token_urlsafe(24)


class Guard:
    """Checks changes against the token (when there is one) and the request's origin."""

    def __init__(self, token: str | None) -> None:
        self.token = token

    def token_matches(self, given: str | None) -> bool:
        return self.token is None or (given is not None and hmac.compare_digest(given, self.token))

    def check_change(self, request: Request) -> None:
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
            raise Refused(f"a change from {origin} is refused: open the console itself to make changes")
        if self.token is None:
            return
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip() or None
        if not (self.token_matches(request.cookies.get(COOKIE)) or self.token_matches(bearer)):
            raise Refused("this console needs its token for changes: open the address it printed at start "
                          "(…/?token=…), or send Authorization: Bearer <token>")
