"""The console's web application: server-rendered pages over one backend.

Pages are rendered here from Jinja templates; ``static/console.js`` only refreshes the parts
marked ``data-live`` and shows the test page when a service runs. Every read and change goes
through the backend, with the calls ``galley get|describe|logs|stop|start`` make.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from galley import __version__, storage
from galley.api.flavors import FlavorCatalogue
from galley.api.hyperparameters import HYPERPARAMETERS
from galley.api.resources import Model, OnlineService, Resource, TrainingJob
from galley.console import forms, proxy, views
from galley.console.security import COOKIE, Guard, NeedsToken, Refused, WrongHost
from galley.model import report

log = logging.getLogger("galley.console")
HERE = Path(__file__).parent
R = TypeVar("R", bound=Resource)
OBJECT_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
"""A Kubernetes object name (DNS-1123 subdomain): anything else is looked up nowhere."""
MAX_FORM_BYTES = 64 * 1024
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
"""The largest photo upload passed on to a predictor (which has its own, equal or lower, limit)."""

_templates = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                                autoescape=jinja2.select_autoescape(default=True), undefined=jinja2.StrictUndefined)
_templates.globals.update(report=report, series=views.series, version=__version__, algorithms=forms.ALGORITHMS,
                          hyperparameters=HYPERPARAMETERS, more_hyperparameters=forms.MORE_HYPERPARAMETERS)
_templates.filters["number"] = report.number
_templates.filters["when"] = lambda value: f"{value:%Y-%m-%d %H:%M:%S}Z" if value else "-"


def render(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(_templates.get_template(template).render(**context), status_code=status_code)


class TooLarge(Exception):
    """A request body over its limit (413), found before more than the limit is read."""


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refused once it passes ``limit`` bytes, so a huge upload is never held whole."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the request body is {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form's fields (the console's forms hold no files)."""
    from urllib.parse import parse_qsl

    body = await read_limited(request, MAX_FORM_BYTES)
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


def create_app(backend: views.Backend, catalogue: FlavorCatalogue, guard: Guard, *, where: str,
               form_defaults: dict[str, str] | None = None) -> FastAPI:
    """The console for ``backend``; ``where`` names it in the page header (this machine, a namespace);
    ``form_defaults`` pre-fills the create form (the demo's photos, on this machine)."""
    app = FastAPI(title="Galley console", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    common: dict[str, Any] = {"where": where, "catalogue": catalogue, "needs_token": guard.token is not None}

    def _problem(status_code: int, title: str, message: str) -> HTMLResponse:
        return render("problem.html", status_code=status_code, title=title, message=message, **common)

    def found(cls: type[R], name: str) -> R:
        if not OBJECT_NAME.fullmatch(name):
            raise LookupError(f"{cls.KIND} {name[:100]!r} not found: not a Kubernetes object name")
        resource = backend.get(cls, name)
        if resource is None:
            raise LookupError(f"{cls.KIND} {name!r} not found in {backend.home}")
        return resource

    @app.exception_handler(LookupError)
    async def not_found(request: Request, error: LookupError) -> HTMLResponse:
        return _problem(404, "Not found", str(error).strip("'\""))

    @app.exception_handler(TooLarge)
    async def too_large(request: Request, error: TooLarge) -> HTMLResponse:
        return _problem(413, "Too large", str(error))

    @app.exception_handler(Refused)
    async def refused(request: Request, error: Refused) -> HTMLResponse:
        return _problem(403, "Refused", str(error))

    @app.middleware("http")
    async def token_from_address(request: Request, call_next: Callable[[Request], Any]) -> Response:
        """``?token=`` (the address printed at start) becomes a cookie, and leaves the address bar."""
        given = request.query_params.get("token")
        if given is None or request.method != "GET":
            response: Response = await call_next(request)
            return response
        if not guard.token_matches(given):
            return _problem(403, "Refused", "that token is not this console's")
        # One leading slash: "//host" would send the browser to another site.
        redirect = RedirectResponse("/" + request.url.path.lstrip("/"), status_code=303)
        redirect.set_cookie(COOKIE, given, httponly=True, samesite="strict")
        return redirect

    @app.middleware("http")
    async def host_and_token(request: Request, call_next: Callable[[Request], Any]) -> Response:
        """Every request, GET included: a ``Host`` that names this console, and the token where there is one
        (``?token=`` is checked, then kept as a cookie, by the middleware inside this one)."""
        try:
            guard.check_host(request)
            if "token" not in request.query_params or request.method != "GET":
                guard.check_read(request)
        except WrongHost as error:
            return Response(str(error), status_code=421, media_type="text/plain")
        except NeedsToken as error:
            return _problem(401, "Token needed", str(error))
        response: Response = await call_next(request)
        return response

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return render("index.html", running_now=views.running_now(backend), listings=views.listings(backend),
                      empty_hint=backend.empty_hint, **common)

    # -- training jobs ---------------------------------------------------------------------------

    def job_context(job: TrainingJob) -> dict[str, Any]:
        records, source = views.history(backend, job)
        package = views.package_of(backend, job, job.status.model_uri if job.status else None) \
            if job.status and job.status.phase == "Succeeded" else None
        return {"job": job, "records": records, "history_source": source, "package": package,
                "events": backend.events(job.KIND, job.name)[-10:], "log": views.log_tail(backend, job),
                "final": bool(job.status and job.status.phase in ("Succeeded", "Failed"))}

    @app.get("/trainingjobs/{name}", response_class=HTMLResponse)
    def job_page(name: str) -> HTMLResponse:
        job = found(TrainingJob, name)
        deploy = {"model_name": name, "service_name": name, **forms.DEPLOY_DEFAULTS}
        return render("job.html", deploy=deploy, errors={}, models=views.models_of(backend, job),
                      **job_context(job), **common)

    @app.get("/trainingjobs/{name}/live", response_class=HTMLResponse)
    def job_live(name: str) -> HTMLResponse:
        return render("job_live.html", **job_context(found(TrainingJob, name)))

    @app.post("/trainingjobs/{name}/deploy", response_class=HTMLResponse)
    async def deploy(name: str, request: Request) -> Response:
        guard.check_change(request)
        job = found(TrainingJob, name)
        form = await _form(request)
        checked = forms.check_deploy(name, form, catalogue)
        taken = [f"{r.KIND} {r.name!r} already exists" for r in checked.resources
                 if backend.get(type(r), r.name) is not None]
        if taken:
            checked.errors.setdefault("", []).extend(taken)
        if not checked.valid:
            return render("job.html", status_code=422, deploy=form, errors=checked.errors,
                          models=views.models_of(backend, job), **job_context(job), **common)
        for resource in checked.resources:
            log.info("%s", backend.create(resource))
        service = next(r for r in checked.resources if isinstance(r, OnlineService))
        return RedirectResponse(f"/services/{service.name}", status_code=303)

    # -- models ----------------------------------------------------------------------------------

    @app.get("/models/{name}", response_class=HTMLResponse)
    def model_page(name: str) -> HTMLResponse:
        model = found(Model, name)
        package = views.package_of(backend, model, model.status.uri if model.status else None)
        return render("model.html", model=model, package=package, services=views.services_of(backend, model),
                      events=backend.events(model.KIND, name)[-10:], **common)

    @app.get("/models/{name}/report", response_class=HTMLResponse)
    def model_report(name: str) -> HTMLResponse:
        text = views.report_html(backend, found(Model, name))
        if text is None:
            return _problem(404, "No report", f"Model {name}'s package has no report.html that can be read from here")
        # The report is a file from storage: shown with no scripts and no access to the console.
        return HTMLResponse(text, headers={"Content-Security-Policy": proxy.SANDBOX})

    # -- online services -------------------------------------------------------------------------

    @app.get("/services/{name}", response_class=HTMLResponse)
    def service_page(name: str) -> HTMLResponse:
        service = found(OnlineService, name)
        return render("service.html", service=service, events=backend.events(service.KIND, name)[-10:], **common)

    @app.get("/services/{name}/live", response_class=HTMLResponse)
    def service_live(name: str) -> HTMLResponse:
        service = found(OnlineService, name)
        return render("service_live.html", service=service, events=backend.events(service.KIND, name)[-10:])

    @app.post("/services/{name}/{action}")
    async def stop_or_start(name: str, action: str, request: Request) -> Response:
        guard.check_change(request)
        if action not in ("stop", "start"):
            raise LookupError(f"no action {action!r}: stop or start")
        found(OnlineService, name)
        log.info("%s", backend.stop(name) if action == "stop" else backend.start(name))
        return RedirectResponse(f"/services/{name}", status_code=303)

    @app.api_route("/services/{name}/page/{path:path}", methods=["GET", "POST"])
    async def test_page(name: str, path: str, request: Request) -> Response:
        """The predictor's own test page and API, passed through (same origin, so it embeds). Only the
        predictor's routes go, checked on the path as sent (see :mod:`galley.console.proxy`). The
        browser's Accept goes along: the predictor answers ``/`` with the page only to a browser."""
        if request.method == "POST":
            guard.check_change(request)
        try:
            checked = proxy.predictor_path(proxy.raw_tail(request.scope.get("raw_path") or b"", 3))
        except proxy.BadPath as error:
            return Response(str(error), status_code=400, media_type="text/plain")
        if not OBJECT_NAME.fullmatch(name):
            return Response(f"{name[:100]!r} is not an OnlineService name", status_code=404, media_type="text/plain")
        if request.method == "GET" and checked == "" and "text/html" in request.headers.get("accept", ""):
            # The page is the console's own copy: no predictor's answer runs script on this origin.
            return HTMLResponse(proxy.test_page(), headers={"Content-Security-Policy": proxy.TEST_PAGE_POLICY})
        body = await read_limited(request, MAX_UPLOAD_BYTES) if request.method == "POST" else None
        try:
            passed = {k: v for k, v in request.headers.items() if k in ("content-type", "accept")}
            status, content_type, data = backend.service_request(name, request.method, checked, body, passed)
        except LookupError as error:
            return Response(str(error).strip("'\""), status_code=409, media_type="text/plain")
        except OSError as error:
            return Response(f"the predictor did not answer: {error}", status_code=502, media_type="text/plain")
        return Response(data, status_code=status, media_type=content_type or None,
                        headers={"Content-Security-Policy": proxy.SANDBOX, "X-Content-Type-Options": "nosniff"})

    # -- the data set ----------------------------------------------------------------------------

    data_sets = views.DataSets(backend)

    def data_query(request: Request) -> views.DataQuery:
        """The data set asked for: ``uri`` (or the create form's ``dataset``), with the form's
        algorithm and Secret and any hyperparameters given by name."""
        given = request.query_params
        algorithm = given.get("algorithm", "mobilenet_v2")
        return views.DataQuery(
            uri=(given.get("uri") or given.get("dataset") or "").strip(),
            format=given.get("format", "auto"),
            algorithm=algorithm if algorithm in forms.ALGORITHMS else "mobilenet_v2",
            secret=given.get("secret", "").strip(),
            hyperparameters={k: v for k, v in given.items() if k in views.DATA_HYPERPARAMETERS and v.strip()})

    @app.get("/data", response_class=HTMLResponse)
    def data_page(request: Request) -> HTMLResponse:
        """A data set as a training job would see it (``galley dataset inspect``), with thumbnails."""
        query = data_query(request)
        view = data_sets.inspect(query, fresh="refresh" in request.query_params) if query.uri else None
        params = query.params()

        def thumbnail(source: str) -> str:
            return "/data/thumbnail?" + urlencode({**params, "source": source})

        return render("data.html", query=query, view=view, thumbnail=thumbnail, data_link="/data?" + urlencode(params),
                      **common)

    @app.get("/data/thumbnail")
    def data_thumbnail(request: Request) -> Response:
        """One photo of the data set, small: only a photo the data set lists, never a path as asked."""
        query = data_query(request)
        source = request.query_params.get("source", "")
        try:
            image = data_sets.thumbnail(query, source)
        except LookupError as error:
            return Response(str(error), status_code=404, media_type="text/plain")
        except (ValueError, OSError, storage.StorageError) as error:  # an unreadable photo (ImageError), storage
            return Response(f"cannot show {source.rsplit('/', 1)[-1]}: {error}", status_code=415,
                            media_type="text/plain")
        return Response(image, media_type="image/jpeg", headers={"X-Content-Type-Options": "nosniff",
                                                                 "Cache-Control": "private, max-age=300"})

    # -- algorithms ------------------------------------------------------------------------------

    @app.get("/algorithms", response_class=HTMLResponse)
    def algorithms_page() -> HTMLResponse:
        """What ``galley algorithms`` prints: the presets, the weights found here, every hyperparameter."""
        from galley import catalogue

        return render("algorithms.html", found=catalogue.algorithms(), **common)

    # -- create ----------------------------------------------------------------------------------

    @app.get("/create", response_class=HTMLResponse)
    def create_form() -> HTMLResponse:
        return render("create.html", form={**forms.TRAINING_DEFAULTS, **(form_defaults or {})}, errors={},
                      preview=None, **common)

    @app.post("/create", response_class=HTMLResponse)
    async def create(request: Request) -> Response:
        form = await _form(request)
        checked = forms.check_training(form, catalogue)
        if checked.valid and form.get("action") == "create":
            guard.check_change(request)
            job = checked.resources[0]
            if backend.get(TrainingJob, job.name) is not None:
                checked.errors[""] = [f"TrainingJob {job.name!r} already exists: choose another name"]
            else:
                log.info("%s", backend.create(job))
                return RedirectResponse(f"/trainingjobs/{job.name}", status_code=303)
        return render("create.html", status_code=200 if checked.valid else 422, form=form, errors=checked.errors,
                      preview=checked.yaml, **common)

    app.state.backend = backend
    return app

