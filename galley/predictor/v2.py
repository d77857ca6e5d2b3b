"""The Open Inference Protocol (v2) request and response, as Triton's and KServe's clients send them.

Both forms of a BYTES input are read: JSON ``data`` holding base64 strings, and the binary tensor
extension (a JSON header of ``Inference-Header-Content-Length`` bytes, then each input's
``binary_data_size`` bytes, each element a 4-byte little-endian length and its bytes). Outputs are
written in JSON, or in binary where the request asks (``parameters.binary_data`` on an output, or
``binary_data_output`` on the request). Whatever the body, a problem is an :class:`InvalidInput`
naming the field and what was expected: never a server error.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from galley.predictor._kserve import InvalidInput
from galley.predictor.jsonbody import SHOWN_CHARACTERS, load_json, shown

HEADER_LENGTH = "inference-header-content-length"
INPUT_NAME = "images"
OUTPUTS = ("probabilities", "predicted_label")
EXPECTED = ('expected {"inputs": [{"name": "images", "datatype": "BYTES", "shape": [N], '
            '"data": ["<base64 image>", ...]}]}, or the binary tensor extension')


@dataclass
class V2Request:
    """The images of a v2 request and how its answer is to be written."""

    images: list[tuple[str, bytes]]
    request_id: str = ""
    outputs: list[str] = field(default_factory=lambda: list(OUTPUTS))
    binary: set[str] = field(default_factory=set)


def _json_part(body: bytes, header_length: str | None) -> tuple[Any, bytes]:
    if header_length is None:
        split = len(body)
    else:
        digits = header_length.strip()  # ASCII digits only: int() refuses "²" and 5,000 digits with ValueError
        if not (digits.isascii() and digits.isdigit() and len(digits) <= 18) or int(digits) > len(body):
            raise InvalidInput(f"the {HEADER_LENGTH} header is {shown(header_length)}; expected the length in bytes "
                               f"of the JSON part of a {len(body)}-byte body")
        split = int(digits)
    parsed = load_json(body[:split], EXPECTED, "the body" if header_length is None else "the JSON header")
    if not isinstance(parsed, dict):
        raise InvalidInput(f"the request is not a JSON object; {EXPECTED}")
    return parsed, body[split:]


def _binary_elements(raw: bytes, where: str) -> list[bytes]:
    """BYTES elements of the binary extension: each a little-endian uint32 length, then the bytes."""
    elements, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidInput(f"{where}: truncated BYTES element length at byte {offset}")
        (size,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise InvalidInput(f"{where}: a BYTES element of {size} bytes runs past the end of the input")
        elements.append(raw[offset:offset + size])
        offset += size
    return elements


def _flatten(data: Any) -> list[Any]:
    """The leaves of nested lists, in order, without recursion: a body may nest as deep as json reads."""
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(element, list) for element in data):
        return data  # the usual shape, [N] strings
    leaves: list[Any] = []
    stack = [iter(data)]
    while stack:
        for element in stack[-1]:
            if isinstance(element, list):
                stack.append(iter(element))
                break
            leaves.append(element)
        else:
            stack.pop()
    return leaves


def _base64_elements(data: Any, where: str) -> list[bytes]:
    elements = []
    for i, value in enumerate(_flatten(data)):
        if not isinstance(value, str):
            raise InvalidInput(f"{where}.data[{i}] is {type(value).__name__}; expected a base64 string")
        try:
            elements.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            raise InvalidInput(f"{where}.data[{i}] is not valid base64; expected a base64-encoded image") from None
    return elements


def _requested_outputs(request: dict[str, Any]) -> tuple[list[str], set[str]]:
    binary_default = bool(_parameters(request).get("binary_data_output", False))
    asked = request.get("outputs")
    if asked is None:
        return list(OUTPUTS), set(OUTPUTS) if binary_default else set()
    if not isinstance(asked, list):
        raise InvalidInput(f"outputs is {type(asked).__name__}; expected a list of {{\"name\": ...}} objects")
    names: list[str] = []
    binary: set[str] = set()
    for i, output in enumerate(asked):
        name = output.get("name") if isinstance(output, dict) else None
        if name not in OUTPUTS:
            raise InvalidInput(f"outputs[{i}] names {shown(name)}; this model's outputs are {', '.join(OUTPUTS)}")
        names.append(name)
        if _parameters(output).get("binary_data", binary_default):
            binary.add(name)
    return names, binary


def decode_request(body: bytes, headers: dict[str, str], max_images: int) -> V2Request:
    """The images of a v2 request (JSON or binary extension), at most ``max_images`` of them."""
    request, tail = _json_part(body, headers.get(HEADER_LENGTH))
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput(f"no inputs; {EXPECTED}")
    names = [tensor.get("name") if isinstance(tensor, dict) else None for tensor in inputs]
    target = names.index(INPUT_NAME) if INPUT_NAME in names else 0
    where = f"inputs[{target}]"
    images: list[bytes] = []
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, dict):
            raise InvalidInput(f"inputs[{i}] is not an object; {EXPECTED}")
        size = _parameters(tensor).get("binary_data_size")
        chunk = b""
        if size is not None:  # binary inputs' bytes follow the header in the inputs' order
            if not isinstance(size, int) or isinstance(size, bool) or size < 0 or size > len(tail):
                raise InvalidInput(f"inputs[{i}].parameters.binary_data_size is {shown(size)}; "
                                   f"{len(tail)} bytes follow the JSON header")
            chunk, tail = tail[:size], tail[size:]
        if i != target:
            continue
        if tensor.get("datatype") != "BYTES":
            datatype = tensor.get("datatype")
            plain = isinstance(datatype, str) and len(datatype) <= SHOWN_CHARACTERS
            raise InvalidInput(f"{where} ({shown(tensor.get('name'))}) has datatype "
                               f"{datatype if plain else shown(datatype)}; {EXPECTED}")
        if size is not None:
            images = _binary_elements(chunk, where)
        elif "data" in tensor:
            images = _base64_elements(tensor["data"], where)
        else:
            raise InvalidInput(f"{where} has neither data nor parameters.binary_data_size; {EXPECTED}")
    if not images:
        raise InvalidInput(f"{where} holds no images; {EXPECTED}")
    if len(images) > max_images:
        raise InvalidInput(f"{where} holds {len(images)} images; at most {max_images} are accepted per request")
    outputs, binary = _requested_outputs(request)
    request_id = request.get("id")
    return V2Request([(f"{where}.data[{n}]", data) for n, data in enumerate(images)],
                     request_id if isinstance(request_id, str) else "", outputs, binary)


def _parameters(obj: dict[str, Any]) -> dict[str, Any]:
    value = obj.get("parameters")
    return value if isinstance(value, dict) else {}


def _binary_bytes(values: list[str]) -> bytes:
    return b"".join(struct.pack("<I", len(encoded)) + encoded for encoded in (v.encode() for v in values))


def encode_response(request: V2Request, model_name: str, model_version: str, probabilities: np.ndarray,
                    labels: list[str]) -> tuple[bytes, dict[str, str]]:
    """The v2 response body and headers: JSON, with binary outputs appended where they were asked for."""
    top = [labels[i] for i in probabilities.argmax(axis=1)]
    tensors: dict[str, tuple[list[int], str, Any, bytes]] = {
        "probabilities": (list(probabilities.shape), "FP32", probabilities.astype(np.float32).flatten().tolist(),
                          probabilities.astype("<f4").tobytes()),
        "predicted_label": ([len(top)], "BYTES", top, _binary_bytes(top)),
    }
    outputs, tail = [], b""
    for name in request.outputs:
        shape, datatype, data, raw = tensors[name]
        output: dict[str, Any] = {"name": name, "shape": shape, "datatype": datatype}
        if name in request.binary:
            output["parameters"] = {"binary_data_size": len(raw)}
            tail += raw
        else:
            output["data"] = data
        outputs.append(output)
    header = json.dumps({"model_name": model_name, "model_version": model_version, "id": request.request_id,
                         "outputs": outputs}, ensure_ascii=False).encode()
    if not tail:
        return header, {"content-type": "application/json"}
    return header + tail, {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
