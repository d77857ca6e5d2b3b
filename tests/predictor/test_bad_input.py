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


def _strip(width: int, height: int) -> bytes:
    """A few hundred bytes of PNG whose short side, resized up before the crop, would take gigabytes."""
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format="PNG", optimize=True)
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
    ("multipart boundary of 10,000 characters", lambda fp: {"content": b"--b\r\n", "headers": {
        "content-type": "multipart/form-data; boundary=" + "b" * 10_000}}, 400, "malformed multipart body"),
    ("too many parts", lambda fp: {"files": [("images", (f"{i}.jpg", b"x")) for i in range(65)]}, 400,
     "more than 64 parts"),
    ("json without images", lambda fp: {"json": {"img": "abc"}}, 400, "no 'images' key (found 'img')"),
    ("bad base64", lambda fp: {"json": {"images": "***"}}, 400, "not valid base64"),
    ("over the size limit", lambda fp: {"files": {"images": ("big.jpg", b"0" * (3 * 1024 * 1024))}}, 413,
     "at most 2,097,152 bytes"),
    ("decompression bomb", lambda fp: {"files": {"images": ("bomb.png", _bomb())}}, 400, "pixels"),
    ("1 x 10,000,000 strip", lambda fp: {"files": {"images": ("tall.png", _strip(1, 10_000_000))}}, 400,
     "at most 50 times its short side"),
    ("10,000 x 1 strip, three times", lambda fp: {"files": [("images", (f"{i}.png", _strip(10_000, 1)))
                                                             for i in range(3)]}, 400,
     "at most 50 times its short side"),
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


DEEP = 100_000
HUGE_INTEGER = "9" * 100_000  # past Python's 4,300-digit limit on int(str): json raises ValueError
LONG = "x" * 1_000_000


def _nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


def _v2(data: str = '["aGVsbG8="]', name: str = '"images"', datatype: str = '"BYTES"', size: str | None = None,
        outputs: str = "[]", id_: str = '"a"') -> str:
    parameters = f', "parameters": {{"binary_data_size": {size}}}' if size is not None else ""
    return (f'{{"id": {id_}, "inputs": [{{"name": {name}, "datatype": {datatype}, "shape": [1], "data": {data}'
            f'{parameters}}}], "outputs": {outputs}}}')


HOSTILE_ANY_ROUTE: list[tuple[str, str]] = [
    ("deep array", _nested(DEEP)),
    ("deep object", '{"a": ' * DEEP + "1" + "}" * DEEP),
    ("deep images", '{"images": ' + _nested(DEEP, '"aGVsbG8="') + "}"),
    ("deep instances", '{"instances": ' + _nested(DEEP) + "}"),
    ("nested just under the parser's limit", '{"images": ' + _nested(900) + ', "inputs": [{"name": "images", '
     '"datatype": "BYTES", "data": ' + _nested(900) + '}], "instances": ' + _nested(900) + "}"),
    ("huge integer", HUGE_INTEGER),
    ("huge integer as images", f'{{"images": {HUGE_INTEGER}}}'),
    ("huge integer as instances", f'{{"instances": [{HUGE_INTEGER}]}}'),
    ("huge exponent", '{"images": 1e999999, "instances": [1e999999], "inputs": 1e999999}'),
    ("tiny exponent", '{"images": -1e-999999}'),
    ("long key", f'{{"{LONG}": 1}}'),
    ("long images", f'{{"images": "{LONG}"}}'),
    ("long instance key", f'{{"instances": [{{"{LONG}": 1}}]}}'),
]
HOSTILE_V2: list[tuple[str, str]] = [
    ("deep data", _v2(data=_nested(DEEP, '"aGVsbG8="'))),
    ("data nested just under the parser's limit", _v2(data=_nested(900, '"aGVsbG8="'))),
    ("nested name", _v2(name=_nested(900))),
    ("nested datatype", _v2(datatype=_nested(900))),
    ("nested binary_data_size", _v2(size=_nested(900))),
    ("nested output name", _v2(outputs='[{"name": ' + _nested(900) + "}]")),
    ("nested id", _v2(id_=_nested(900))),
    ("huge binary_data_size", _v2(size=HUGE_INTEGER)),
    ("huge id", _v2(id_=HUGE_INTEGER)),
    ("huge exponent size", _v2(size="1e999999")),
    ("long name", _v2(name=f'"{LONG}"')),
    ("long datatype", _v2(datatype=f'"{LONG}"')),
    ("long output name", _v2(outputs=f'[{{"name": "{LONG}"}}]')),
]
POST_ROUTES = ["/", "/v1/models/food-model:predict", "/v1/models/food-model:explain",
               "/v2/models/food-model/infer", "/v2/models/food-model/versions/1/infer"]
V2_ROUTES = POST_ROUTES[-2:]
HOSTILE = ([(route, case, body) for route in POST_ROUTES for case, body in HOSTILE_ANY_ROUTE]
           + [(route, case, body) for route in V2_ROUTES for case, body in HOSTILE_V2])


@pytest.mark.parametrize(("route", "case", "body"), HOSTILE, ids=[f"{r} {c}" for r, c, _ in HOSTILE])
def test_hostile_json_is_a_4xx_with_a_short_message(client: httpx.Client, route: str, case: str,
                                                    body: str) -> None:
    """Deep nesting, numbers past the parser's limits and long strings: a 4xx, and the message stays short."""
    for headers in ({"content-type": "application/json"}, {"content-type": "application/json", "ce-specversion": "1.0",
                    "ce-id": "1", "ce-source": "t", "ce-type": "t", "ce-contenttype": "application/json"}):
        response = client.post(route, content=body.encode(), headers=headers)
        assert 400 <= response.status_code < 500, (case, headers, response.text[:300])
        assert response.json()["error"], response.text[:300]
        assert len(response.content) < 2000, f"{case}: a {len(response.content)}-byte answer echoes the body"


@pytest.mark.parametrize("value", [b"\xb2", "9" * 5000, "1e3", "-1", ""], ids=["superscript two", "5,000 digits",
                                                                                  "exponent", "negative", "empty"])
@pytest.mark.parametrize("route", V2_ROUTES)
def test_a_hostile_binary_header_length_is_a_400(client: httpx.Client, route: str, value: str | bytes) -> None:
    response = client.post(route, content=_v2().encode(), headers={
        "content-type": "application/octet-stream", "inference-header-content-length": value})
    assert response.status_code == 400, response.text[:300]
    assert "inference-header-content-length header is" in response.json()["error"]
    assert len(response.content) < 2000


def test_explain_says_there_is_no_explainer(client: httpx.Client, food_photos: Any) -> None:
    good = base64.b64encode(food_photos.holdout[0][0].read_bytes()).decode()
    response = client.post("/v1/models/food-model:explain", json={"instances": [{"image_bytes": {"b64": good}}]})
    assert response.status_code == 404 and "no explainer" in response.json()["error"]


def test_a_binary_cloudevent_with_json_data_is_answered(client: httpx.Client, food_photos: Any) -> None:
    """KServe calls ``.decode`` on the dict that CloudEvents already parsed: that was a 500 for every body."""
    good = base64.b64encode(food_photos.holdout[0][0].read_bytes()).decode()
    response = client.post("/v1/models/food-model:predict", json={"instances": [{"image_bytes": {"b64": good}}]},
                           headers={"ce-specversion": "1.0", "ce-id": "1", "ce-source": "test", "ce-type": "predict",
                                    "ce-contenttype": "application/json"})
    assert response.status_code == 200, response.text[:300]
    assert len(response.json()["predictions"][0]["scores"]) == 4
