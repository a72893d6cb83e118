"""The error statuses each route documents in OpenAPI (``responses=``), all ErrorBody.

:data:`COMMON_RESPONSES` are the statuses the HTTP edge and the dependencies can give any
route (docs/api.md, Errors); a route adds its own 409 with :func:`conflict`.
"""

from __future__ import annotations

from typing import Any

from keys.wire import ErrorBody

__all__ = ["COMMON_RESPONSES", "conflict"]

Responses = dict[int | str, dict[str, Any]]


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


COMMON_RESPONSES: Responses = {
    400: _error("a request the broker cannot act on (e.g. a body that is not JSON)"),
    401: _error("missing, unknown or revoked credential"),
    403: _error("wrong role, or not found or not yours"),
    408: _error("the request body did not arrive within the read timeout"),
    413: _error("the request body is over its size limit"),
    415: _error("the body is not JSON (a chunk: not application/octet-stream)"),
    422: _error("a body or parameter that does not validate"),
    429: _error("too many failed credentials from this address or for this credential"),
    503: _error("the store does not answer, or the broker is at its connection limit"),
}


def conflict(description: str) -> Responses:
    """A route's documented 409."""
    return {409: _error(description)}
