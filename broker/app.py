"""The broker's FastAPI application: ``create_app(settings)``.

Routers, one error handler that turns every :class:`~keys.errors.BrokerError` into an
:class:`~keys.wire.ErrorBody`, request ids, JSON log lines, and a lifespan that opens the
runtime (keystore, store) and the linkage worker, and closes them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

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
    uploads,
)
from broker.audit import AuditCheckpointer
from broker.config import BrokerSettings
from broker.ingest import LinkWorker
from broker.metrics import MetricsMiddleware
from broker.runtime import BrokerRuntime
from keys.errors import BrokerError
from keys.wire import ErrorBody

__all__ = ["JsonLogFormatter", "RouterHook", "configure_json_logging", "create_app"]

logger = logging.getLogger(__name__)

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

RouterHook = Callable[[FastAPI], None]
"""A function that adds routers to the app (later modules register theirs this way)."""

_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]
_Asgi = Callable[[_Scope, _Receive, _Send], Awaitable[None]]


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id."""

    def format(self, record: logging.LogRecord) -> str:
        """Format ``record`` as a JSON line."""
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": _request_id.get(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__
            trace = traceback.extract_tb(record.exc_info[2])
            entry["where"] = [f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in trace]
        return json.dumps(entry, ensure_ascii=False)


def configure_json_logging(level: int = logging.INFO) -> None:
    """Send the root logger's records to stderr as JSON lines (``serve`` calls this)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _declared_length(scope: _Scope) -> int:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0


def _request_ids(app: _Asgi, *, max_body: int, max_chunk: int) -> _Asgi:
    """Give every request an id (echoed in ``X-Request-Id``) and log one line per request.

    The line names the route template (``/v1/datasets/{name}``), never the concrete path.
    A declared body over the limit (``max_chunk`` for chunk uploads, which also check the
    bytes they read, ``max_body`` for anything else) is refused with 413 before it is read.
    """

    async def middleware(scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex[:16]
        token = _request_id.set(request_id)
        started = time.perf_counter()
        status = 500
        is_chunk = scope.get("method") == "PUT" and "/chunks/" in str(scope.get("path", ""))
        handler = app
        if _declared_length(scope) > (max_chunk if is_chunk else max_body):
            handler = _too_large

        async def send_with_id(message: _Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await handler(scope, receive, send_with_id)
        finally:
            template = str(getattr(scope.get("route"), "path", "(unrouted)"))
            if str(scope.get("path", "")).startswith("/v1/") and not template.startswith("/v1"):
                template = "/v1" + template  # routers are mounted under /v1
            logger.info(
                "%s %s %d %.1fms",
                scope.get("method", "-"),
                template,
                status,
                (time.perf_counter() - started) * 1000,
            )
            _request_id.reset(token)

    return middleware


async def _too_large(scope: _Scope, receive: _Receive, send: _Send) -> None:
    response = _error(413, "too_large", "the request body is over the broker's size limit")
    await response(scope, receive, send)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(
        status_code=status, content=ErrorBody(code=code, message=message).model_dump()
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
        where = ".".join(str(part) for part in err.get("loc", ()))
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    return _error(422, "validation_failed", "; ".join(problems) or "invalid request")


_HTTP_CODES = {404: "no_such_endpoint", 405: "method_not_allowed", 413: "too_large"}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    status = int(getattr(exc, "status_code", 500))
    detail = str(getattr(exc, "detail", "error"))
    return _error(status, _HTTP_CODES.get(status, "http_error"), detail)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unexpected %s", type(exc).__name__, exc_info=exc)
    return _error(500, "internal_error", "internal error; see the broker log")


async def _supervise(runtime: BrokerRuntime, *, every: float = 1.0) -> None:
    """Restart the embedded redis-server whenever it dies (it recovers from its AOF)."""
    while True:
        await asyncio.sleep(every)
        try:
            await asyncio.to_thread(runtime.store.supervise)
        except BrokerError as exc:
            logger.error("cannot restart the embedded redis-server: %s", exc)


def create_app(
    settings: BrokerSettings, *, hooks: tuple[RouterHook, ...] = (), link_worker: bool = True
) -> FastAPI:
    """The broker's ASGI application.

    Args:
        settings: the broker's settings (no module-level settings exist).
        hooks: extra functions that add routers (for modules outside this file).
        link_worker: run the background linkage worker in this process.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = BrokerRuntime.open(settings)
        app.state.runtime = runtime
        worker = LinkWorker(runtime) if link_worker else None
        app.state.link_worker = worker
        if worker is not None:
            worker.start()
        checkpointer = AuditCheckpointer(
            runtime.store,
            runtime.secrets.audit_signing_key,
            every=settings.audit_checkpoint_every,
            max_age=timedelta(seconds=settings.audit_checkpoint_max_age_seconds),
        )
        checkpointer.start()
        supervisor = asyncio.create_task(_supervise(runtime))
        try:
            yield
        finally:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
            checkpointer.stop()
            if worker is not None:
                worker.stop()
            runtime.close()

    app = FastAPI(
        title="Tessera broker",
        version="0.1.0",
        summary="Privacy-preserving pseudonymised record linkage",
        lifespan=lifespan,
        responses={
            401: {"model": ErrorBody, "description": "missing, unknown or revoked credential"},
            403: {"model": ErrorBody, "description": "wrong role, or not found or not yours"},
        },
    )
    app.state.settings = settings
    app.add_exception_handler(BrokerError, _broker_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for status in _HTTP_CODES:
        app.add_exception_handler(status, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.include_router(health.router)
    app.include_router(metrics.router)
    for module in (identities, keyblobs, datasets, uploads, linkage):
        app.include_router(module.router, prefix="/v1")
    app.include_router(agreements.router, prefix="/v1")
    app.include_router(releases.router, prefix="/v1")
    app.include_router(audit.router, prefix="/v1")
    app.include_router(pages.router)
    for hook in hooks:
        hook(app)
    app.add_middleware(
        _RequestIdMiddleware,
        max_body=settings.max_json_bytes,
        max_chunk=settings.max_chunk_bytes,
    )
    app.add_middleware(MetricsMiddleware)
    return app


class _RequestIdMiddleware:
    """Starlette-style class wrapper around :func:`_request_ids`."""

    def __init__(self, app: _Asgi, *, max_body: int, max_chunk: int) -> None:
        self._inner = _request_ids(app, max_body=max_body, max_chunk=max_chunk)

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        await self._inner(scope, receive, send)
