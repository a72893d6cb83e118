"""The broker's FastAPI application: ``create_app(settings)``.

Routers, error handlers that turn every :class:`~keys.errors.BrokerError`, validation
failure and HTTP error into an :class:`~keys.wire.ErrorBody`, the HTTP edge
(broker/edge.py: request ids, authentication before any body is read, body limits,
security headers), JSON log lines, and a lifespan that opens the runtime (keystore,
store) and the linkage worker, and closes them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import traceback
from collections.abc import AsyncIterator, Callable, MutableMapping
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from broker.api import (
    agreements,
    audit,
    datasets,
    health,
    identities,
    keyblobs,
    linkage,
    metrics,
    pages,
    releases,
    review,
    uploads,
)
from broker.api.responses import COMMON_RESPONSES
from broker.audit import AuditCheckpointer
from broker.config import BrokerSettings
from broker.deps import authenticate
from broker.edge import EdgeMiddleware, client_address, request_id
from broker.metrics import MetricsMiddleware
from broker.runtime import BrokerRuntime
from broker.worker import LinkWorker
from keys.errors import BrokerError
from keys.wire import ErrorBody

__all__ = ["JsonLogFormatter", "RouterHook", "configure_json_logging", "create_app"]

logger = logging.getLogger(__name__)

RouterHook = Callable[[FastAPI], None]
"""A function that adds routers to the app (later modules register theirs this way)."""


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, client address.

    With ``debug`` an exception's whole traceback is included (``traceback``); without,
    only its type and the frames' file:line (``where``), which name no value.
    """

    def __init__(self, *, debug: bool = False) -> None:
        super().__init__()
        self._debug = debug

    def format(self, record: logging.LogRecord) -> str:
        """Format ``record`` as a JSON line."""
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id(),
            "client": client_address(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__
            trace = traceback.extract_tb(record.exc_info[2])
            entry["where"] = [f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in trace]
            if self._debug:
                entry["traceback"] = "".join(traceback.format_exception(*record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def configure_json_logging(level: int | None = None) -> None:
    """Send the root logger's records to stderr as JSON lines (``serve`` calls this).

    Without ``level``: DEBUG (with tracebacks) when the command line asked for it
    (``--debug`` makes :func:`keys.cliutil.run_cli` set the root logger to DEBUG), else
    INFO; ``serve`` passes DEBUG itself when ``TESSERA_BROKER_DEBUG`` is set.
    """
    root = logging.getLogger()
    if level is None:
        level = logging.DEBUG if root.level == logging.DEBUG else logging.INFO
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter(debug=level <= logging.DEBUG))
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for noisy in ("asyncio", "multipart", "python_multipart"):
        logging.getLogger(noisy).setLevel(max(level, logging.INFO))
    logger.debug("debug logging on: unexpected errors are logged with their traceback")


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content=ErrorBody(code=code, message=message).model_dump(),
        headers=headers,
    )


async def _broker_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BrokerError)
    if exc.status_code >= 500:
        logger.error("%s: %s", type(exc).__name__, exc)
    return _error(exc.status_code, exc.code, str(exc))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors()[:20]:
        if err.get("type") == "json_invalid":
            problems.append("body: not valid JSON")
            continue
        where = ".".join(str(part) for part in err.get("loc", ()))
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    return _error(422, "validation_failed", "; ".join(problems) or "invalid request")


_HTTP_CODES = {
    400: "bad_request",
    404: "no_such_endpoint",
    405: "method_not_allowed",
    413: "too_large",
}
_HTTP_MESSAGES = {
    400: "the body is not valid JSON, or is nested too deeply",
    404: "no such endpoint",
    405: "this endpoint does not take that method",
}


def _allowed_methods(request: Request) -> str | None:
    """Every method the OpenAPI document lists at this path (``Allow`` of a 405)."""
    path = request.url.path
    methods: set[str] = set()
    for template, operations in request.app.openapi()["paths"].items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            methods |= {m.upper() for m in operations}
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods)) if methods else None


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    message = _HTTP_MESSAGES.get(status, str(exc.detail))
    headers = dict(exc.headers or {})
    allowed = _allowed_methods(request) if status == 405 else None
    if allowed is not None:
        headers["Allow"] = allowed  # all of them: the router names only one route's
    return _error(status, _HTTP_CODES.get(status, "http_error"), message, headers)


async def _authenticate_at_edge(
    scope: MutableMapping[str, Any], header: str | None, address: str
) -> None:
    """The edge's authenticator: :func:`broker.deps.authenticate` in a worker thread."""
    runtime: BrokerRuntime = scope["app"].state.runtime
    identity = await run_in_threadpool(authenticate, runtime, header, address=address)
    scope.setdefault("state", {})["identity"] = identity


async def _supervise(runtime: BrokerRuntime, *, every: float = 1.0) -> None:
    """Restart the embedded redis-server whenever it dies (it recovers from its AOF)."""
    while True:
        await asyncio.sleep(every)
        try:
            await asyncio.to_thread(runtime.store.supervise)
        except BrokerError as exc:
            logger.error("cannot restart the embedded redis-server: %s", exc)


def create_app(
    settings: BrokerSettings,
    *,
    hooks: tuple[RouterHook, ...] = (),
    link_worker: bool = True,
    runtime: BrokerRuntime | None = None,
    attach: bool = False,
) -> FastAPI:
    """The broker's ASGI application.

    Args:
        settings: the broker's settings (no module-level settings exist).
        hooks: extra functions that add routers (for modules outside this file).
        link_worker: run the background linkage worker in this process.
        runtime: one the caller opened (``serve`` does, to refuse a bad start in one
            line); the app closes it on shutdown. Without it the app opens its own.
        attach: open the runtime attached to the embedded redis-server another process
            started (the processes of ``serve --workers``).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        live = runtime if runtime is not None else BrokerRuntime.open(settings, attach=attach)
        app.state.runtime = live
        worker = LinkWorker(live) if link_worker else None
        app.state.link_worker = worker
        if worker is not None:
            worker.start()
        checkpointer = AuditCheckpointer(
            live.store,
            live.secrets.audit_signing_key,
            every=settings.audit_checkpoint_every,
            max_age=timedelta(seconds=settings.audit_checkpoint_max_age_seconds),
        )
        checkpointer.start()
        supervisor = asyncio.create_task(_supervise(live))
        try:
            yield
        finally:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
            checkpointer.stop()
            if worker is not None:
                worker.stop()
            live.close()

    docs = settings.serves_api_docs
    app = FastAPI(
        title="Tessera broker",
        version="0.1.0",
        summary="Privacy-preserving pseudonymised record linkage",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        responses=COMMON_RESPONSES,
    )
    app.state.settings = settings
    app.add_exception_handler(BrokerError, _broker_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.include_router(health.router)
    app.include_router(metrics.router)
    for module in (identities, keyblobs, datasets, uploads, linkage):
        app.include_router(module.router, prefix="/v1")
    app.include_router(agreements.router, prefix="/v1")
    app.include_router(releases.router, prefix="/v1")
    app.include_router(review.router, prefix="/v1")
    app.include_router(audit.router, prefix="/v1")
    app.include_router(pages.router)
    for hook in hooks:
        hook(app)
    app.add_middleware(EdgeMiddleware, settings=settings, authenticate=_authenticate_at_edge)
    app.add_middleware(MetricsMiddleware)
    return app
