"""Bad input is a 4xx that says what was wrong and what is expected; the server keeps serving."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from galley.testing.processes import predictor


@pytest.fixture(scope="module")
def client(trained_package: Path) -> Iterator[httpx.Client]:
    with predictor(str(trained_package), "--max-body-bytes", str(2 * 1024 * 1024)) as url, \
            httpx.Client(base_url=url, timeout=60) as c:
        yield c


def _bomb() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (12_000, 12_000)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _truncated(food_photos: Any) -> bytes:
    return food_photos.holdout[0][0].read_bytes()[:2000]


CASES: list[tuple[str, Any, int, str]] = [
    ("not an image", lambda fp: {"files": {"images": ("a.txt", b"hello, not a photo")}}, 400,
     "not an image in a recognised format"),
    ("truncated image", lambda fp: {"files": {"images": ("t.jpg", _truncated(fp))}}, 400, "not a readable image"),
    ("empty file", lambda fp: {"files": {"images": ("e.jpg", b"")}}, 400, "the file is empty"),
    ("empty body", lambda fp: {"content": b"", "headers": {"content-type": "application/json"}}, 400,
     "not valid JSON"),
    ("no content type", lambda fp: {"content": b"abc"}, 400, "has no Content-Type"),
    ("misspelt field", lambda fp: {"files": {"image": ("a.jpg", b"x")}}, 400, "found field(s) 'image'"),
    ("text, not a file", lambda fp: {"data": {"images": "a photo"}, "files": {"other": ("o.txt", b"x")}}, 400,
     "'images' was sent as text"),
    ("multipart without boundary", lambda fp: {"content": b"--x\r\n", "headers": {
        "content-type": "multipart/form-data"}}, 400, "the Content-Type has no boundary"),
    ("too many parts", lambda fp: {"files": [("images", (f"{i}.jpg", b"x")) for i in range(65)]}, 400,
     "more than 64 parts"),
    ("json without images", lambda fp: {"json": {"img": "abc"}}, 400, "no 'images' key (found 'img')"),
    ("bad base64", lambda fp: {"json": {"images": "***"}}, 400, "not valid base64"),
    ("over the size limit", lambda fp: {"files": {"images": ("big.jpg", b"0" * (3 * 1024 * 1024))}}, 413,
     "at most 2,097,152 bytes"),
    ("decompression bomb", lambda fp: {"files": {"images": ("bomb.png", _bomb())}}, 400, "pixels"),
    ("v1 without instances", lambda fp: {"json": {"inputs": []}, "path": "/v1/models/food-model:predict"}, 400,
     "no instances"),
    ("v2 with floats", lambda fp: {"json": {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1],
                                                        "data": [1.0]}]},
                                   "path": "/v2/models/food-model/infer"}, 400, "datatype FP32"),
    ("unknown model", lambda fp: {"json": {"instances": []}, "path": "/v1/models/other:predict"}, 404, "other"),
]


@pytest.mark.parametrize(("case", "request_", "status", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_requests(client: httpx.Client, food_photos: Any, case: str, request_: Any, status: int,
                      message: str) -> None:
    arguments = request_(food_photos)
    path = arguments.pop("path", "/")
    response = client.post(path, **arguments)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    good = food_photos.holdout[0][0].read_bytes()
    after = client.post("/", json={"images": base64.b64encode(good).decode()})
    assert after.status_code == 200, "the server must keep serving after bad input"
