"""The predictor with the clients people already use against Triton and KServe, from PyPI.

tritonclient's HTTP client (v2, BYTES as JSON base64 strings and as the binary tensor extension)
and KServe's own ``InferenceRESTClient`` (v1 with every instance shape in KServe's examples, v2
binary), against a real server on a loopback port.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.slow
LABELS = {"水果", "花", "蔬菜", "鸟"}


@pytest.fixture(scope="module")
def model_name(server: str) -> str:
    import httpx

    return str(httpx.get(server + "/api/model", timeout=30).json()["name"])


@pytest.fixture(scope="module")
def photos(food_photos: Any) -> list[bytes]:
    return [path.read_bytes() for path, _ in food_photos.holdout[:2]]


def triton_client(server: str) -> Any:
    import tritonclient.http as triton

    return triton.InferenceServerClient(url=server.removeprefix("http://"), network_timeout=60)


def check_probabilities(probabilities: np.ndarray, images: int) -> None:
    assert probabilities.shape == (images, len(LABELS))
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)


def test_triton_client_reads_health_and_metadata(server: str, model_name: str) -> None:
    client = triton_client(server)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(model_name)
    metadata = client.get_model_metadata(model_name)
    assert metadata["name"] == model_name
    assert metadata["inputs"] == [{"name": "images", "datatype": "BYTES", "shape": [-1]}]
    assert {o["name"] for o in metadata["outputs"]} == {"probabilities", "predicted_label"}


@pytest.mark.parametrize("binary", [False, True], ids=["json-base64", "binary-extension"])
def test_triton_client_infers_bytes(server: str, model_name: str, photos: list[bytes], binary: bool) -> None:
    import tritonclient.http as triton

    images = photos if binary else [base64.b64encode(p) for p in photos]
    tensor = triton.InferInput("images", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=np.object_), binary_data=binary)
    outputs = [triton.InferRequestedOutput("probabilities", binary_data=binary),
               triton.InferRequestedOutput("predicted_label", binary_data=binary)]
    result = triton_client(server).infer(model_name, [tensor], outputs=outputs)
    check_probabilities(result.as_numpy("probabilities"), len(images))
    labels = [label.decode() if isinstance(label, bytes) else label for label in result.as_numpy("predicted_label")]
    assert len(labels) == len(images) and set(labels) <= LABELS


def test_kserve_rest_client_v2_binary(server: str, model_name: str, photos: list[bytes]) -> None:
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    async def run() -> Any:
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
        tensor = InferInput("images", [len(photos)], "BYTES")
        tensor.set_data_from_numpy(np.array(photos, dtype=np.object_), binary_data=True)
        try:
            assert await client.is_model_ready(server, model_name)
            return await client.infer(server, InferRequest(model_name, [tensor]), model_name=model_name)
        finally:
            await client.close()

    response = asyncio.run(run())
    outputs = {o.name: o for o in response.outputs}
    check_probabilities(outputs["probabilities"].as_numpy(), len(photos))


def _instances(photo: bytes) -> list[Any]:
    b64 = base64.b64encode(photo).decode()
    return [{"image_bytes": {"b64": b64}}, {"image": {"b64": b64}}, {"b64": b64}, {"data": b64}, b64]


def test_kserve_rest_client_v1_accepts_every_instance_shape(server: str, model_name: str,
                                                             photos: list[bytes]) -> None:
    from kserve import InferenceRESTClient, RESTConfig

    instances = _instances(photos[0])

    async def run() -> Any:
        client = InferenceRESTClient(RESTConfig(protocol="v1", timeout=60))
        try:
            return await client.infer(server, {"instances": instances}, model_name=model_name)
        finally:
            await client.close()

    predictions = asyncio.run(run())["predictions"]
    assert len(predictions) == len(instances)
    for answer in predictions:
        assert {label for label, _ in answer["scores"]} == LABELS
    assert len({answer["predicted_label"] for answer in predictions}) == 1  # the same photo each time
