"""What the console passes on to a predictor, and how it comes back.

The console reaches a predictor with its own identity: on a cluster through the API server's
service proxy, with the kubeconfig's credentials. A path that climbs out of the predictor
(``..``, ``%2F``, ``%2E%2E``, a backslash, ``//``) would be a request to the API server as the
person who started the console (the namespace's Secrets, say). So the path is checked on the
bytes the client sent, before any decoding, and must name one of the predictor's own routes.

What comes back is shown on the console's own origin, so nothing a predictor answers may run
there: whatever answers behind the predictor Service (any pod that carries its label) could
otherwise act with the console user's cookie. The test page itself is the console's own copy of
Galley's page (:func:`test_page`), and every proxied answer (the package's report above all, which
whoever writes the package controls) is sandboxed as the console's own report route is.
"""

from __future__ import annotations

import re

from galley.model.config import REPORT_POLICY

ROUTES = ("", "api/model", "api/activity", "report")
"""The predictor's routes passed as they are (the test page, what it fetches, the report)."""
PROTOCOL_PREFIXES = ("v1", "v2")
"""The inference protocols: anything below ``/v1/`` and ``/v2/``."""
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._:-]{0,252}")
"""One path segment as the predictor's routes spell them: no dot segments, nothing encoded."""
MAX_SEGMENTS = 8

SANDBOX = REPORT_POLICY
"""No scripts, no forms, no access to the console's origin: for documents from storage."""
TEST_PAGE_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
                    "img-src 'self' data: blob:; connect-src 'self'; form-action 'self'; frame-ancestors 'self'; "
                    "base-uri 'none'; object-src 'none'")
"""The test page talks only to the console it is embedded in."""


class BadPath(ValueError):
    """A proxied path that is not one of the predictor's routes (400, before anything is sent)."""


def predictor_path(raw: str) -> str:
    """``raw`` (the part after ``/page/``, exactly as the client sent it) if it names one of the
    predictor's own routes; otherwise :class:`BadPath` saying why."""
    shown = raw[:120]
    if "%" in raw or "\\" in raw:
        raise BadPath(f"the path {shown!r} holds an encoded character or a backslash; "
                      "the predictor's routes need neither")
    if raw.startswith("/") or "//" in raw:
        raise BadPath(f"the path {shown!r} has an empty segment; give a path below the predictor, such as v2/models")
    segments = raw.split("/")
    if segments[-1] == "":
        segments.pop()  # a trailing slash, as in v2/models/
    if len(segments) > MAX_SEGMENTS or not all(_SEGMENT.fullmatch(s) for s in segments):
        raise BadPath(f"the path {shown!r} is not one of the predictor's routes (segments of letters, digits, "
                      "'_', '.', ':' and '-', no dot segments)")
    joined = "/".join(segments)
    if joined in ROUTES or (segments and segments[0] in PROTOCOL_PREFIXES):
        return raw
    raise BadPath(f"the path {shown!r} is not one of the predictor's routes: {', '.join(repr(r) for r in ROUTES)}, "
                  "or below v1/ or v2/")


def raw_tail(raw_path: bytes, depth: int) -> str:
    """The part of a request's raw path after its first ``depth`` segments (``/services/NAME/page/`` is
    3), undecoded; raw non-ASCII bytes become characters that :func:`predictor_path` refuses."""
    text = raw_path.decode("latin-1")
    parts = text.split("/", depth + 1)
    return parts[depth + 1] if len(parts) > depth + 1 else ""


def test_page() -> str:
    """Galley's test page, from this installation: the same file the predictor serves at ``/``."""
    from importlib import resources

    return resources.files("galley.predictor").joinpath("static/index.html").read_text(encoding="utf-8")
