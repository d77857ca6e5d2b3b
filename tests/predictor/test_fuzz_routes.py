"""No request gets a 500: generated bodies (hypothesis) against every route of a real server.

Bodies are JSON of any shape, JSON shaped like v1 and v2 requests with wrong parts, raw bytes
under assorted content types and binary-extension headers, and hostile JSON: nesting as deep as
100,000, numbers past what the parser takes (``1e999999``, 5,000 digits) and long strings, in every
place of a request. Each must be answered with a status below 500 (hostile JSON: a 4xx with a short
message), and the server must still classify a real photo afterwards.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.slow
EXAMPLES = 600  # per test: about 2,400 requests in all

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=16)
base64_strings = st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode())
v2_inputs = st.fixed_dictionaries({}, optional={
    "name": st.sampled_from(["images", "x", ""]) | st.text(max_size=5),
    "datatype": st.sampled_from(["BYTES", "FP32", "INT8"]) | json_values,
    "shape": st.lists(st.integers(-2, 4), max_size=3) | json_values,
    "data": st.lists(base64_strings | json_values, max_size=4) | json_values,
    "parameters": st.fixed_dictionaries({}, optional={"binary_data_size": st.integers(-5, 200) | json_values}),
})
v2_bodies = st.fixed_dictionaries({}, optional={
    "inputs": st.lists(v2_inputs, max_size=3) | json_values,
    "outputs": st.lists(st.fixed_dictionaries({}, optional={
        "name": st.sampled_from(["probabilities", "predicted_label", "other"]),
        "parameters": st.fixed_dictionaries({}, optional={"binary_data": json_values})}), max_size=3) | json_values,
    "id": json_values,
    "parameters": st.fixed_dictionaries({}, optional={"binary_data_output": json_values}),
})
v1_bodies = st.fixed_dictionaries({}, optional={
    "instances": st.lists(base64_strings | st.fixed_dictionaries({}, optional={
        "image_bytes": st.fixed_dictionaries({"b64": base64_strings | json_values}) | json_values,
        "image": json_values, "b64": base64_strings | json_values, "data": base64_strings | json_values,
    }) | json_values, max_size=4) | json_values,
    "inputs": json_values,
})
content_types = st.sampled_from(["application/json", "application/octet-stream", "text/plain", "",
                                 "multipart/form-data; boundary=x", "multipart/form-data", "image/jpeg"])


# Hostile JSON is written as text: a JSON library would refuse to write most of it.
hostile_leaves = st.sampled_from(["1e999999", "-1e999999", "1e-999999", "9" * 5000, "-" + "9" * 4301,
                                  '"' + "x" * 200_000 + '"', '"aGVsbG8="', "null", "{}"]) | json_values.map(json.dumps)
hostile_values = st.builds(lambda depth, leaf, opener: opener[0] * depth + leaf + opener[1] * depth,
                           st.integers(0, 1200) | st.sampled_from([980, 1000, 100_000]), hostile_leaves,
                           st.sampled_from([("[", "]"), ('{"a": ', "}"), ('[{"b": ', "}]")]))
hostile_places = st.sampled_from([
    "%s", '{"images": %s}', '{"images": [%s]}', '{"instances": %s}', '{"instances": [%s]}',
    '{"instances": [{"image_bytes": {"b64": %s}}]}', "{%s: 1}",  # a long key, where the value is a string
    '{"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1], "data": %s}]}',
    '{"inputs": [{"name": %s, "datatype": "BYTES", "data": ["aGVsbG8="]}]}',
    '{"inputs": [{"name": "images", "datatype": %s, "data": ["aGVsbG8="]}]}',
    '{"inputs": [{"name": "images", "datatype": "BYTES", "parameters": {"binary_data_size": %s}}]}',
    '{"inputs": [{"name": "images", "datatype": "BYTES", "data": ["aGVsbG8="]}], "outputs": [{"name": %s}]}',
    '{"id": %s, "inputs": [{"name": "images", "datatype": "BYTES", "data": ["aGVsbG8="]}]}',
])
cloudevent = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "fuzz", "ce-type": "fuzz",
              "ce-contenttype": "application/json"}


def send(client: httpx.Client, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    response = client.post(path, content=body, headers=headers)
    assert response.status_code < 500, (path, headers, body[:300], response.text[:300])
    return response


def encoded(value: Any) -> bytes:
    return json.dumps(value).encode()


ROUTES = ["/", "/v1/models/food-model:predict", "/v1/models/food-model:explain", "/v2/models/food-model/infer",
          "/v2/models/food-model/versions/1/infer"]
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(path=st.sampled_from(ROUTES), body=json_values, content_type=content_types)
def test_any_json_on_any_route(client: httpx.Client, path: str, body: Any, content_type: str) -> None:
    send(client, path, encoded(body), {"content-type": content_type} if content_type else {})


@FUZZ
@given(body=v2_bodies, tail=st.binary(max_size=64),
       header=st.none() | st.integers(-3, 400) | st.text("0123456789ab-x", min_size=1, max_size=4))
def test_v2_shaped_requests(client: httpx.Client, body: dict[str, Any], tail: bytes, header: Any) -> None:
    head = encoded(body)
    headers = {"content-type": "application/octet-stream"}
    if header is not None:
        headers["inference-header-content-length"] = str(len(head) if header == 0 else header)
    send(client, "/v2/models/food-model/infer", head + tail, headers)


@FUZZ
@given(body=v1_bodies)
def test_v1_shaped_requests(client: httpx.Client, body: dict[str, Any]) -> None:
    send(client, "/v1/models/food-model:predict", encoded(body), {"content-type": "application/json"})


@settings(FUZZ, max_examples=EXAMPLES // 2)
@given(path=st.sampled_from(ROUTES), place=hostile_places, value=hostile_values, as_cloudevent=st.booleans())
def test_hostile_json_on_any_route(client: httpx.Client, path: str, place: str, value: str,
                                   as_cloudevent: bool) -> None:
    headers = {"content-type": "application/json", **(cloudevent if as_cloudevent else {})}
    response = send(client, path, (place % value).encode(), headers)
    assert response.status_code >= 400, response.text[:300]  # no body here holds an image
    assert len(response.content) < 4000, f"a {len(response.content)}-byte answer echoes the body"


@FUZZ
@given(path=st.sampled_from(ROUTES), body=st.binary(max_size=256), content_type=content_types)
def test_raw_bytes(client: httpx.Client, path: str, body: bytes, content_type: str) -> None:
    send(client, path, body, {"content-type": content_type} if content_type else {})


def test_still_serving_after_the_fuzzing(client: httpx.Client, food_photos: Any) -> None:
    photo = food_photos.holdout[0][0].read_bytes()
    response = client.post("/", files={"images": ("photo.jpg", photo, "image/jpeg")})
    assert response.status_code == 200 and len(response.json()["scores"]) == 4
