"""The upload's multipart reader, on bodies written by httpx (as browsers and curl write them)."""

from __future__ import annotations

import httpx
import pytest

from galley.predictor.multipart import MultipartError, read_parts


def _encoded(**arguments: object) -> tuple[bytes, str]:
    request = httpx.Request("POST", "http://predictor/", **arguments)  # type: ignore[arg-type]
    return request.read(), request.headers["content-type"]


def test_files_and_fields_come_back_in_order_with_their_names_and_bytes() -> None:
    body, content_type = _encoded(data={"note": "two photos"},
                                  files=[("images", ("凉皮.jpg", b"\xff\xd8first")), ("images", ("b.png", b"second"))])
    parts = read_parts(body, content_type, max_parts=8)
    assert [(p.name, p.filename, p.data) for p in parts] == [
        ("note", None, b"two photos"), ("images", "凉皮.jpg", b"\xff\xd8first"), ("images", "b.png", b"second")]


def test_a_file_whose_bytes_contain_boundary_like_lines_is_read_whole() -> None:
    payload = b"\r\n--not-the-boundary\r\n" * 50 + bytes(range(256)) * 40
    body, content_type = _encoded(files={"images": ("x.bin", payload)})
    assert read_parts(body, content_type, max_parts=1)[0].data == payload


def test_a_body_cut_short_loses_its_unfinished_part_and_nothing_else() -> None:
    body, content_type = _encoded(files=[("images", ("a.jpg", b"a" * 100)), ("images", ("b.jpg", b"b" * 100))])
    parts = read_parts(body[: body.rindex(b"b" * 100) + 50], content_type, max_parts=8)
    assert [p.filename for p in parts] == ["a.jpg"]


@pytest.mark.parametrize(("body", "content_type", "message"), [
    (b"--x\r\n", "multipart/form-data", "no boundary"),
    (b'--x\r\nContent-Disposition: form-data; filename="a.jpg"\r\n\r\nabc\r\n--x--\r\n',
     "multipart/form-data; boundary=x", 'no Content-Disposition "name"'),
    (b"--x\r\n" + b"X-Header: y\r\n" * 40 + b"\r\nabc\r\n--x--\r\n", "multipart/form-data; boundary=x",
     "malformed multipart body"),
])
def test_a_malformed_body_is_refused_with_the_reason(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(MultipartError, match=message):
        read_parts(body, content_type, max_parts=8)


def test_more_parts_than_allowed_are_refused_before_they_are_read() -> None:
    body, content_type = _encoded(files=[("images", (f"{i}.jpg", b"x")) for i in range(5)])
    with pytest.raises(MultipartError, match="more than 4 parts"):
        read_parts(body, content_type, max_parts=4)
