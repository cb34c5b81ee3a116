"""The app factory: wires settings, repository and queue, mounts the API (`api/`) and the pages
(`web/`) with what they share (`access/`), and maps the error tree to HTTP.

The API process never imports the speech or NLP models: routes store, enqueue by dotted path and
return; workers do the scoring.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from qa_service import __version__, web
from qa_service.access.audit import AuditTrail
from qa_service.access.ratelimit import ClientLimit
from qa_service.access.session import app_secret
from qa_service.api import (
    agents,
    calibration,
    certification,
    disputes,
    erasure,
    keys,
    metrics,
    policy,
    rescores,
    review,
    routes,
    search,
    teams,
    webhooks,
)
from qa_service.api.hosts import TrustedHosts
from qa_service.api.queryparams import refuse_unknown_query
from qa_service.api.schemas import error_body, message_of, one_error_format
from qa_service.errors import (
    AuthError,
    Conflict,
    Forbidden,
    InputError,
    NotFound,
    QAServiceError,
    RulesError,
    TransientError,
)
from qa_service.settings import Settings
from qa_service.storage.inputs import EmptyInput, InputTooLarge
from qa_service.storage.objects import InputStore, S3Store, input_store
from qa_service.storage.repository import Repository

log = logging.getLogger(__name__)

# The upload takes QA_MAX_UPLOAD_BYTES, plus this for the multipart framing and the form fields around
# the file (the file itself is held to the exact limit).
UPLOAD_PATH = "/v1/calls"
BODY_SLACK_BYTES = 64 * 1024
# Every other body is read whole into memory (JSON, YAML, form fields), and FastAPI reads a JSON or
# form body before it checks the caller's key: these limits hold them small as they stream in.
BODY_LIMIT_BYTES = 1024 * 1024
ROUTE_BODY_LIMITS = {
    "/v1/webhooks/telephony": webhooks.MAX_EVENT_BYTES,
    "/v1/rubrics": routes.MAX_RULES_BYTES,
    "/v1/policy-packs": routes.MAX_RULES_BYTES,
}

# Most specific first: the first matching class decides the status.
STATUS_OF: tuple[tuple[type[BaseException], int], ...] = (
    (EmptyInput, 400),
    (routes.BadRequest, 400),
    (InputTooLarge, 413),
    (InputError, 422),
    (RulesError, 422),
    (NotFound, 404),
    (Conflict, 409),
    (Forbidden, 403),
    (AuthError, 401),
    (TransientError, 503),
    (QAServiceError, 500),
)


def status_for(exc: BaseException) -> int:
    """The HTTP status an error from the error tree maps to."""
    for cls, status in STATUS_OF:
        if isinstance(exc, cls):
            return status
    return 500


def create_app(settings: Settings, *, repo: Repository | None = None, queue: Any = None,
               inputs: InputStore | None = None) -> FastAPI:
    """Build the API for these settings; migrates the database to head first.

    `inputs`: where call inputs go (None: the store QA_STORAGE_URL / QA_STORAGE_DIR name, checked now).
    """
    session_secret = app_secret(settings)  # refuses several processes without a shared secret
    if repo is None:
        from qa_service.storage import open_repository

        repo = open_repository(settings.database_url)
    if queue is None:
        from redis import Redis
        from rq import Queue

        # Connects lazily: the API starts even when Redis is briefly away (healthz reports it).
        queue = Queue(settings.queue_name, connection=Redis.from_url(settings.redis_url))
    if inputs is None:
        inputs = input_store(settings)
        if isinstance(inputs, S3Store):
            inputs.check()  # a missing bucket or refused credentials stop start-up, not each upload

    app = FastAPI(
        title="Call QA service",
        version=__version__,
        description="Recorded customer-service calls in, QA scorecards with evidence out. "
                    "Authenticate with `Authorization: Bearer <API key>`.",
        docs_url=None,  # served below from the installed Swagger UI, not from a CDN
        redoc_url=None,
        dependencies=[Depends(refuse_unknown_query)],  # API routes only: see api/queryparams.py
    )
    _local_docs(app)
    _one_error_format(app)
    app.state.settings = settings
    app.state.repo = repo
    app.state.queue = queue
    app.state.inputs = inputs
    app.state.session_secret = session_secret
    for router in (routes.router, webhooks.router, agents.router, keys.router, policy.router,
                   rescores.router, metrics.router, web.router, review.router, web.review_router,
                   erasure.router, certification.router, teams.router, disputes.router, web.disputes_router,
                   calibration.router, web.calibration_router, search.router, web.queue_router,
                   web.search_router, web.keys_router, web.upload_router):
        app.include_router(router)
    app.mount("/static", web.static_files(), name="static")
    limits = {**ROUTE_BODY_LIMITS, UPLOAD_PATH: settings.max_upload_bytes + BODY_SLACK_BYTES}
    app.add_middleware(BodyLimit, limit=BODY_LIMIT_BYTES, route_limits=limits, upload_path=UPLOAD_PATH,
                       upload_limit=settings.max_upload_bytes)
    app.add_middleware(TrustedHosts, allowed_hosts=settings.trusted_hosts, www_redirect=False)
    # The client limit inside the audit trail, so the trail sees how the address's failures stand once
    # it has counted; the trail outermost, so it sees every answer; both outside everything else, so a
    # refused address costs no work.
    app.add_middleware(ClientLimit)
    app.add_middleware(AuditTrail)

    @app.exception_handler(QAServiceError)
    async def _service_error(request: Request, exc: QAServiceError) -> JSONResponse:
        status = status_for(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, type(exc).__name__)
        return JSONResponse(status_code=status, content=error_body(str(exc)), headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # Unknown paths (404), wrong methods (405), the rate limit (429): the one error format.
        if exc.status_code in (204, 304):
            return Response(status_code=exc.status_code, headers=exc.headers)
        return JSONResponse(status_code=exc.status_code, content=error_body(str(exc.detail)),
                            headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the log by the server; the client learns only that it failed.
        log.error("%s %s failed: %s", request.method, request.url.path, type(exc).__name__)
        return JSONResponse(status_code=500, content=error_body("internal error; the failure is logged"))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Name each field and what is wrong; never echo the submitted values (they may be personal).
        errors = [{"field": ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path")),
                   "message": message_of(e), "type": e.get("type", "")} for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors)
        return JSONResponse(status_code=422, content=error_body(detail, errors=errors))

    return app


def _local_docs(app: FastAPI) -> None:
    """`/docs`: Swagger UI from the `swagger-ui-bundle` package's files, so it works without internet."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title}: API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png")


def _one_error_format(app: FastAPI) -> None:
    """/openapi.json describes every error as the handlers send it (`Error`)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = one_error_format(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def app_from_env() -> FastAPI:
    """App factory for uvicorn (`--factory`): settings from QA_* environment variables."""
    return create_app(Settings())


class _BodyTooLarge(Exception):
    pass


class BodyLimit:
    """Refuse request bodies over a byte limit with 413, counting as they stream in.

    A Content-Length over the limit is refused before any byte is read; a chunked body is cut off
    when the running count passes the limit (the multipart parser never spools the rest to disk).
    `limit` holds every path but those in `route_limits`; the 413 for `upload_path` names
    `upload_limit`, the size of the file itself.
    """

    def __init__(self, app: Any, limit: int, route_limits: Mapping[str, int] | None = None,
                 upload_path: str | None = None, upload_limit: int | None = None):
        self.app = app
        self.limit = limit
        self.route_limits = dict(route_limits or {})
        self.upload_path = upload_path
        self.upload_limit = upload_limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        path = scope["path"].rstrip("/")
        limit = self.route_limits.get(path, self.limit)
        if path == self.upload_path and self.upload_limit is not None:
            detail = f"the upload is larger than the limit of {self.upload_limit} bytes"
        elif path in self.route_limits:
            detail = f"the body is larger than the limit of {limit} bytes for {path}"
        else:
            detail = f"the request body is larger than the limit of {limit} bytes"
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await self._refuse(send, detail)
            return
        state = {"received": 0, "exceeded": False, "started": False}

        async def limited_receive() -> dict[str, Any]:
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    state["exceeded"] = True
                    raise _BodyTooLarge()
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            if state["exceeded"]:
                return  # whatever the app answers to a cut-off body, the answer is 413
            state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyTooLarge:
            pass
        if state["exceeded"] and not state["started"]:
            await self._refuse(send, detail)

    async def _refuse(self, send: Any, detail: str) -> None:
        body = json.dumps(error_body(detail)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
