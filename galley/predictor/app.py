"""The HTTP surface of the predictor.

* ``POST /``: the cloud platform's API, multipart field ``images`` (one or several files) or JSON
  ``{"images": "<base64>"}``; answers ``{"predicted_label", "scores"}`` per image.
* KServe v1 ``/v1/models/<name>:predict``, health, readiness and metadata, from KServe's own
  endpoint code; v2 ``/v2/models/<name>/infer`` read and written by :mod:`galley.predictor.v2`, so
  that Triton's and KServe's clients work with JSON and with the binary tensor extension.
* ``GET /``: the test page (a JSON liveness answer to clients that do not ask for HTML).
* ``GET /metrics``: Prometheus, with KServe's per-stage latency histograms and the time of the
  last prediction; ``GET /api/activity``: that time as JSON, which idle stop reads.

Bad input is a 4xx with a message saying what was wrong and what is expected, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from importlib import resources
from typing import Any

from cloudevents.http import CloudEvent
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from galley.model.config import REPORT_POLICY
from galley.predictor._kserve import (
    DataPlane,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    ModelRepository,
    ModelRepositoryExtension,
    V2Endpoints,
    register_v1_endpoints,
    register_v2_endpoints,
)
from galley.predictor.batching import Overloaded
from galley.predictor.jsonbody import brief, load_json, shown
from galley.predictor.limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_IN_FLIGHT
from galley.predictor.model import GalleyModel, Uploads
from galley.predictor.multipart import MultipartError, read_parts
from galley.predictor.v2 import decode_request, encode_response

log = logging.getLogger(__name__)
FIELD = "images"
MAX_PARTS = 64
"""Parts read from one upload; more is refused (the image cap then counts the files among them)."""
SHOWN_KEYS = 5
"""Keys of a JSON body named in the message that says ``images`` is missing."""
EXPECTED_UPLOAD = ("expected multipart/form-data with one or more files in the field 'images', "
                   'or JSON {"images": "<base64>"}')


class BodyLimit:
    """Refuse bodies over ``limit`` bytes with 413, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send, int(declared))
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise _TooLarge(received)
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _TooLarge as error:
            await self._refuse(send, error.size)

    async def _refuse(self, send: Send, size: int) -> None:
        await _send_json(send, 413, {"error": f"the request body is {size:,} bytes; at most {self.limit:,} bytes are "
                                              "accepted (set --max-body-bytes to change the limit)"})


class InFlightLimit:
    """Answer 503 with ``Retry-After`` to POSTs beyond ``limit`` in flight, before reading their bodies."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            await _send_json(send, 503, {"error": f"the predictor is busy ({self.in_flight} requests in flight); "
                                                  "retry shortly"}, [(b"retry-after", b"1")])
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


async def _send_json(send: Send, status: int, payload: dict[str, Any],
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    def __init__(self, size: int):
        self.size = size


class _DataPlane(DataPlane):
    """KServe's data plane, with the JSON data of a binary CloudEvent taken as the event decoded it.

    With ``ce-contenttype: application/json`` the CloudEvents library has parsed the data already,
    and KServe then calls ``.decode`` on the resulting dict: an AttributeError, a 500, for every body.
    """

    def decode_cloudevent(self, body: Any) -> tuple[Any, dict[str, Any]]:
        if isinstance(body, CloudEvent) and not isinstance(body.get_data(), bytes | str | None):
            return body.get_data(), dict(body.get_attributes())
        return super().decode_cloudevent(body)


def _page() -> str:
    return resources.files("galley.predictor").joinpath("static/index.html").read_text(encoding="utf-8")


async def _uploads(request: Request) -> Uploads:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        try:
            parts = read_parts(await request.body(), content_type, max_parts=MAX_PARTS)
        except MultipartError as error:
            raise InvalidInput(f"could not read the multipart body: {error}; {EXPECTED_UPLOAD}") from None
        files = [part for part in parts if part.name == FIELD and part.filename is not None]
        if not files:
            present = sorted({part.name for part in parts})
            found = f"found field(s) {', '.join(repr(k) for k in present)}" if present else "found no fields"
            if FIELD in present:
                found += "; 'images' was sent as text, without a filename"
            raise InvalidInput(f"no file in the field 'images' ({found}); {EXPECTED_UPLOAD}")
        return Uploads([(f"images[{i}] ({part.filename or 'unnamed'})", part.data)
                        for i, part in enumerate(files)])
    if content_type.startswith("application/json"):
        body = load_json(await request.body(), EXPECTED_UPLOAD)
        value = body.get(FIELD) if isinstance(body, dict) else None
        if value is None:
            keys = ", ".join(shown(k) for k in list(body)[:SHOWN_KEYS]) if isinstance(body, dict) else "none"
            if isinstance(body, dict) and len(body) > SHOWN_KEYS:
                keys += f" and {len(body) - SHOWN_KEYS:,} more"
            raise InvalidInput(f"no 'images' key (found {keys}); {EXPECTED_UPLOAD}")
        values = value if isinstance(value, list) else [value]
        items = []
        for i, item in enumerate(values):
            try:
                items.append((f"images[{i}]", base64.b64decode(item, validate=True)))
            except (binascii.Error, ValueError, TypeError):
                raise InvalidInput(f"images[{i}] is not valid base64; {EXPECTED_UPLOAD}") from None
        return Uploads(items)
    if not content_type:
        raise InvalidInput(f"the request has no Content-Type; {EXPECTED_UPLOAD}")
    raise InvalidInput(f"unsupported Content-Type {content_type!r}; {EXPECTED_UPLOAD}")


def create_app(model: GalleyModel, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> FastAPI:
    """The FastAPI application serving ``model`` (already loaded)."""
    app = FastAPI(title="Galley predictor", docs_url=None, redoc_url=None, openapi_url=None)
    repository = ModelRepository()
    repository.update(model)
    dataplane = _DataPlane(model_registry=repository)

    @app.get("/", response_model=None)
    async def index(request: Request) -> Response:
        if "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(_page())
        return JSONResponse({"status": "alive"})

    async def classify(request: Request) -> Response:
        if not model.ready:
            raise ModelNotReady(model.name)
        uploads = await _uploads(request)
        answers, _ = await model(uploads, dict(request.headers))
        return JSONResponse(answers[0] if len(answers) == 1 else answers)

    @app.get("/api/model")
    async def describe() -> dict[str, Any]:
        assert model.config is not None
        return {"name": model.name, "version": model.version, "algorithm": model.config.algorithm,
                "labels": model.labels, "metrics": model.config.metrics, "ready": model.ready,
                "runtime": model.runtime.name if model.runtime else None,
                "report": "report" if model.report_path() else None}

    @app.get("/api/activity")
    async def activity() -> dict[str, Any]:
        return model.activity.as_json()

    @app.get("/report", response_model=None)
    async def report() -> Response:
        path = model.report_path()
        if path is None:
            return JSONResponse({"error": "this model package has no evaluation report"}, status_code=404)
        # The package's own HTML: sandboxed, so it cannot script this origin (the test page's).
        return FileResponse(path, media_type="text/html", headers={
            "Content-Security-Policy": REPORT_POLICY, "X-Content-Type-Options": "nosniff"})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def explain(request: Request) -> Response:
        model_name = request.path_params["model_name"]
        if model_name != model.name:
            raise ModelNotFound(model_name)
        return JSONResponse({"error": f"model {model.name!r} has no explainer; ask "
                                      f"/v1/models/{model.name}:predict for its scores"}, status_code=404)

    async def infer_v2(request: Request) -> Response:
        model_name = request.path_params["model_name"]
        if model_name != model.name:
            raise ModelNotFound(model_name)
        if not model.ready:
            raise ModelNotReady(model.name)
        decoded = decode_request(await request.body(), dict(request.headers), model.max_images)
        probabilities = await model.probabilities(decoded.images)
        body, headers = encode_response(decoded, model.name, model.version, probabilities, model.labels)
        return Response(body, headers=headers)

    v2_answers = V2Endpoints(dataplane)

    async def versioned(request: Request) -> Response:
        """A model's metadata or readiness at ``versions/V``: KServe's own routes answer 500 to any
        version; this one serves the package's version and says 404 to any other."""
        name, version = request.path_params["model_name"], request.path_params["model_version"]
        if name != model.name:
            raise ModelNotFound(name)
        if version != model.version:
            return JSONResponse({"error": f"model {model.name!r} is served at version {model.version!r}, "
                                          f"not {shown(version)}"}, status_code=404)
        if request.url.path.endswith("/ready"):
            return JSONResponse((await v2_answers.model_ready(name)).model_dump())
        return JSONResponse((await v2_answers.model_metadata(name)).model_dump(exclude_none=True))

    async def repository_change(request: Request) -> Response:
        """KServe's model repository extension would let anyone who reaches the port unload the model."""
        return JSONResponse({"error": f"this predictor serves {model.name!r}, loaded at start; it does not load or "
                                      "unload models on request (stop the OnlineService instead)"}, status_code=403)

    # The prediction routes are plain Starlette routes, ahead of FastAPI's and KServe's (whose v2
    # routes would take these paths): they take the request as it is, so FastAPI's per-request
    # dependency resolution, about a tenth of a millisecond, stays off the serving path.
    app.router.routes[:0] = [
        Route("/", classify, methods=["POST"]),
        Route("/v1/models/{model_name}:explain", explain, methods=["POST"]),  # KServe's would answer 500
        Route("/v2/models/{model_name}/infer", infer_v2, methods=["POST"]),
        Route("/v2/models/{model_name}/versions/{model_version}/infer", infer_v2, methods=["POST"]),
        Route("/v2/models/{model_name}/versions/{model_version}", versioned, methods=["GET"]),
        Route("/v2/models/{model_name}/versions/{model_version}/ready", versioned, methods=["GET"]),
        Route("/v2/repository/models/{model_name}/load", repository_change, methods=["POST"]),
        Route("/v2/repository/models/{model_name}/unload", repository_change, methods=["POST"]),
    ]
    register_v1_endpoints(app, dataplane, ModelRepositoryExtension(model_registry=repository))
    register_v2_endpoints(app, dataplane, ModelRepositoryExtension(model_registry=repository))

    @app.exception_handler(InvalidInput)
    async def invalid_input(_: Request, error: InvalidInput) -> JSONResponse:
        message = brief(str(error))
        log.info("bad request: %s", message)
        return JSONResponse({"error": message}, status_code=400)

    @app.exception_handler(ModelNotFound)
    async def not_found(_: Request, error: ModelNotFound) -> JSONResponse:
        return JSONResponse({"error": f"{error}; this server serves {model.name!r}"}, status_code=404)

    @app.exception_handler(Overloaded)
    async def overloaded(_: Request, error: Overloaded) -> JSONResponse:
        return JSONResponse({"error": f"the predictor is busy: {error}; retry shortly"}, status_code=503,
                            headers={"Retry-After": "1"})

    @app.exception_handler(ModelNotReady)
    async def not_ready(_: Request, error: ModelNotReady) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=503)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse({"error": f"internal error: {type(error).__name__}"}, status_code=500)

    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.add_middleware(InFlightLimit, limit=max_in_flight)
    return app
