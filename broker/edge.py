"""The broker's HTTP edge: one ASGI middleware in front of every route.

For every request it:

- gives it an id (``X-Request-Id`` on every response, in every log line) and logs one
  line naming the route template, the status, the time taken and the client address;
- authenticates a ``/v1`` request that carries a body or a credential **before reading
  any of its body** (:func:`broker.deps.authenticate`), so an unauthenticated caller can
  make the broker hold nothing but its headers;
- refuses a body that is not JSON (or, for a chunk, ``application/octet-stream`` or
  untyped) with 415, reads the body itself counting the bytes *as they arrive*, whatever the framing
  (``Content-Length`` or ``Transfer-Encoding: chunked``), answers 413 at the limit and
  408 when the body does not arrive whole within ``body_read_timeout_seconds``, and
  hands the route the bytes it read;
- answers every error, an unhandled one included, with an :class:`~keys.wire.ErrorBody`;
- adds security headers to every response (pages set their own stricter ones).

It is plain ASGI (no framework import) so that it wraps the whole app, Starlette's own
error handling included.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from broker.config import BrokerSettings
from broker.errors import (
    PayloadTooLargeError,
    RateLimitedError,
    RequestTimeoutError,
    UnsupportedMediaTypeError,
)
from keys.errors import BrokerError
from keys.wire import ErrorBody

__all__ = [
    "MAX_PAGE_BODY_BYTES",
    "SECURITY_HEADERS",
    "EdgeMiddleware",
    "client_address",
    "request_id",
]

logger = logging.getLogger("broker.http")

MAX_PAGE_BODY_BYTES = 64 * 1024
"""Largest body outside ``/v1`` (the dashboard's forms): a few short fields."""

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
"""Added to every response that does not set its own (pages and Swagger UI do)."""

_DOCS_POLICY = (
    b"default-src 'none'; script-src https://cdn.jsdelivr.net 'unsafe-inline'; "
    b"style-src https://cdn.jsdelivr.net 'unsafe-inline'; img-src https: data:; "
    b"connect-src 'self'; frame-ancestors 'none'"
)
"""``/docs`` and ``/redoc`` (development only) load their scripts from jsDelivr."""
_DOCS_PATHS = frozenset({"/docs", "/redoc"})

_CHUNK_PATH = re.compile(r"^/v1/datasets/[^/]+/batches/[^/]+/chunks/[^/]+$")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_client: contextvars.ContextVar[str] = contextvars.ContextVar("client", default="-")

_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]
_Asgi = Callable[[_Scope, _Receive, _Send], Awaitable[None]]
Authenticator = Callable[[_Scope, str | None, str], Awaitable[None]]
"""Checks a request's ``Authorization`` header (or raises), leaving the identity in scope."""


def request_id() -> str:
    """The id of the request being served (``-`` outside one)."""
    return _request_id.get()


def client_address() -> str:
    """The client address of the request being served (``-`` outside one)."""
    return _client.get()


class _Disconnected(Exception):
    """The client went away while sending its body: nothing to answer."""


def _header(scope: _Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _media_type(scope: _Scope) -> str:
    value = _header(scope, b"content-type") or ""
    return value.split(";", 1)[0].strip().lower()


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _error_response(
    status: int, code: str, message: str
) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The body and headers of an :class:`ErrorBody` answer."""
    body = json.dumps(ErrorBody(code=code, message=message).model_dump()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return body, headers


class EdgeMiddleware:
    """See the module docstring.

    Args:
        app: the application it wraps.
        settings: the limits (body sizes, read timeout).
        authenticate: checks the ``Authorization`` header of a ``/v1`` request.
    """

    def __init__(
        self, app: _Asgi, *, settings: BrokerSettings, authenticate: Authenticator
    ) -> None:
        self._app = app
        self._settings = settings
        self._authenticate = authenticate

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        rid = uuid.uuid4().hex[:16]
        client = scope.get("client")
        address = str(client[0]) if client else "-"
        tokens = (_request_id.set(rid), _client.set(address))
        started = time.perf_counter()
        status = 0

        async def send_with_headers(message: _Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                present = {bytes(k).lower() for k, _ in headers}
                headers.append((b"x-request-id", rid.encode()))
                if scope.get("path") in _DOCS_PATHS and b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", _DOCS_POLICY))
                    present.add(b"content-security-policy")
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                if (
                    str(scope.get("path", "")).startswith("/v1/")
                    and b"cache-control" not in present
                ):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        try:
            admitted = await self._admit(scope, receive, address)
            await self._app(scope, admitted, send_with_headers)
        except _Disconnected:
            status = status or 499
        except BrokerError as exc:
            if exc.status_code >= 500:
                logger.error("%s: %s", type(exc).__name__, exc)
            if status == 0:
                await self._answer(send_with_headers, exc)
        except Exception:
            logger.exception("unexpected error")
            if status == 0:
                await self._answer(
                    send_with_headers, BrokerError("internal error; see the broker log")
                )
        finally:
            self._log(scope, status, started)
            for var, token in zip((_request_id, _client), tokens, strict=True):
                var.reset(token)

    async def _answer(self, send: _Send, exc: BrokerError) -> None:
        body, headers = _error_response(exc.status_code, exc.code, str(exc))
        if isinstance(exc, RateLimitedError):
            headers.append((b"retry-after", str(exc.retry_after).encode()))
        await send({"type": "http.response.start", "status": exc.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _admit(self, scope: _Scope, receive: _Receive, address: str) -> _Receive:
        """Authenticate, check the media type and read the body within its limits."""
        path = str(scope.get("path", ""))
        method = str(scope.get("method", ""))
        is_api = path.startswith("/v1/")
        is_chunk = method == "PUT" and _CHUNK_PATH.match(path) is not None
        if is_chunk:
            limit = self._settings.max_chunk_bytes
        elif is_api:
            limit = self._settings.max_json_bytes
        else:
            limit = MAX_PAGE_BODY_BYTES
        declared = _header(scope, b"content-length")
        framed = _header(scope, b"transfer-encoding") is not None
        length = int(declared) if declared is not None and declared.isdigit() else 0
        if length > limit:
            raise PayloadTooLargeError(f"a request body here is at most {limit} bytes")
        authorization = _header(scope, b"authorization")
        has_body = length > 0 or framed
        if is_api and (has_body or authorization is not None):
            await self._authenticate(scope, authorization, address)
        if not has_body:
            return receive
        if is_api and method in _BODY_METHODS:
            media_type = _media_type(scope)
            wanted = "application/octet-stream" if is_chunk else "application/json"
            # a chunk may come without a Content-Type; JSON must say it is JSON
            fits = media_type in (wanted, "") if is_chunk else _is_json(media_type)
            if not fits:
                raise UnsupportedMediaTypeError(f"send the body as {wanted}")
        body = await self._read_body(receive, limit)
        return _replay(body, receive)

    async def _read_body(self, receive: _Receive, limit: int) -> bytes:
        """The whole body, counted as it arrives, within the size and time limits."""
        parts: list[bytes] = []
        size = 0
        deadline = self._settings.body_read_timeout_seconds
        try:
            async with asyncio.timeout(deadline):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _Disconnected()
                    part = bytes(message.get("body", b""))
                    size += len(part)
                    if size > limit:
                        raise PayloadTooLargeError(f"a request body here is at most {limit} bytes")
                    parts.append(part)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            raise RequestTimeoutError(
                f"the request body did not arrive within {deadline:g} s"
            ) from None
        return b"".join(parts)

    def _log(self, scope: _Scope, status: int, started: float) -> None:
        path = str(scope.get("path", ""))
        template = str(getattr(scope.get("route"), "path", "(unrouted)"))
        if path.startswith("/v1/") and not template.startswith("/v1"):
            template = "/v1" + template  # routers are mounted under /v1
        logger.info(
            "%s %s %d %.1fms",
            scope.get("method", "-"),
            template,
            status,
            (time.perf_counter() - started) * 1000,
        )


def _replay(body: bytes, receive: _Receive) -> _Receive:
    """A ``receive`` that gives the body already read, then waits on the real one."""
    sent = False

    async def replay() -> _Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
