"""The parts of a ``multipart/form-data`` body, for the cloud platform's ``POST /`` upload.

The parsing is python-multipart's, the parser Starlette uses, driven directly: each part's bytes
are collected in memory, one copy of each file beside the body, which the predictor's body limit
bounds. Starlette's form API would first put every file in a spooled temporary file and a
``FormData``, a tenth of a millisecond per request on the serving path. A part with a
``filename`` in its Content-Disposition is a file, as in Starlette and browsers; one without is a
plain field.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header


class MultipartError(ValueError):
    """The body is not the multipart/form-data its Content-Type says; the message says why."""


@dataclass
class Part:
    """One part: its form field name, its filename (None for a plain field) and its bytes."""

    name: str
    filename: str | None
    data: bytes = b""


@dataclass
class _Reading:
    parts: list[Part] = field(default_factory=list)
    header_name: bytes = b""
    header_value: bytes = b""
    disposition: bytes | None = None
    current: Part | None = None
    chunks: list[bytes] = field(default_factory=list)


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def read_parts(body: bytes, content_type: str, max_parts: int) -> list[Part]:
    """Every part of ``body`` in order, or :class:`MultipartError` (also past ``max_parts`` parts)."""
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise MultipartError("the Content-Type has no boundary")
    reading = _Reading()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        reading.header_name += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        reading.header_value += data[start:end]

    def on_header_end() -> None:
        if reading.header_name.lower() == b"content-disposition":
            reading.disposition = reading.header_value
        reading.header_name = reading.header_value = b""

    def on_headers_finished() -> None:
        _, params = parse_options_header(reading.disposition or b"")
        reading.disposition = None
        if b"name" not in params:
            raise MultipartError(f'part {len(reading.parts) + 1} has no Content-Disposition "name"')
        if len(reading.parts) == max_parts:
            raise MultipartError(f"more than {max_parts} parts")
        filename = params.get(b"filename")
        reading.current = Part(_text(params[b"name"]), None if filename is None else _text(filename))
        reading.chunks = []

    def on_part_data(data: bytes, start: int, end: int) -> None:
        reading.chunks.append(data[start:end])

    def on_part_end() -> None:
        if reading.current is not None:
            reading.current.data = b"".join(reading.chunks)  # one chunk, the usual case: no second copy
            reading.parts.append(reading.current)
        reading.current = None
        reading.chunks = []

    try:  # the parser refuses a boundary over 70 characters (RFC 2046) as it is made
        parser = MultipartParser(boundary, {"on_header_field": on_header_field, "on_header_value": on_header_value,
                                            "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
                                            "on_part_data": on_part_data, "on_part_end": on_part_end})
        parser.write(body)
        parser.finalize()
    except FormParserError as error:
        raise MultipartError(f"malformed multipart body ({error})") from None
    return reading.parts
