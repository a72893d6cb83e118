"""FastAPI dependencies: the runtime, the caller's identity from its bearer credential, roles.

Every route names the role it needs with one of the ``*Caller`` aliases, so a route without
a guard stands out in review. A revoked credential is refused from the next request on:
each request looks its digest up in Redis, nothing is cached.

:func:`authenticate` is the one place a bearer credential is checked. The HTTP edge
(broker/edge.py) calls it before it reads any request body and leaves the identity in
the request's state; :func:`_caller` reuses it, or authenticates a body-less request
itself. Failures are counted per client address and per credential digest, and a locked
out address or credential gets 429 before its credential is looked up
(broker/store/limits.py).
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from broker.errors import RoleError, UnauthorisedError
from broker.runtime import BrokerRuntime
from broker.store.client import Store
from broker.store.identities import Identity, identity_for_credential
from broker.store.limits import check_lockout, record_auth_failure
from keys.wire import Role

__all__ = [
    "AdminCaller",
    "AnyCaller",
    "AuditorCaller",
    "OrgCaller",
    "ResearcherCaller",
    "RuntimeDep",
    "StoreDep",
    "authenticate",
    "get_runtime",
    "require_roles",
]

logger = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="A credential from `tessera-broker admin`")

_MAX_CREDENTIAL_CHARS = 256


def authenticate(runtime: BrokerRuntime, authorization: str | None, *, address: str) -> Identity:
    """The live identity of an ``Authorization: Bearer …`` header value.

    Raises:
        UnauthorisedError: no bearer credential, or an unknown or revoked one.
        RateLimitedError: the address or the credential is locked out for now.
    """
    scheme, _, credential = (authorization or "").partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise UnauthorisedError()
    digest = (
        runtime.credential_digest(credential) if len(credential) <= _MAX_CREDENTIAL_CHARS else None
    )
    settings = runtime.settings
    check_lockout(runtime.store, settings, address=address, digest=digest)
    identity = identity_for_credential(runtime.store, digest) if digest is not None else None
    if identity is None:
        record_auth_failure(runtime.store, settings, address=address, digest=digest)
        logger.warning("bearer credential refused (unknown, revoked or malformed)")
        raise UnauthorisedError()
    return identity


def get_runtime(request: Request) -> BrokerRuntime:
    """The runtime the app's lifespan opened."""
    runtime: BrokerRuntime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[BrokerRuntime, Depends(get_runtime)]


def _store(runtime: RuntimeDep) -> Store:
    return runtime.store


StoreDep = Annotated[Store, Depends(_store)]


def _caller(
    request: Request,
    runtime: RuntimeDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Identity:
    """The caller, as the edge authenticated it, or authenticated here (``bearer`` only
    names the scheme in the OpenAPI document; the header itself is parsed once)."""
    known = getattr(request.state, "identity", None)
    if isinstance(known, Identity):
        return known
    address = request.client.host if request.client is not None else "-"
    identity = authenticate(runtime, request.headers.get("authorization"), address=address)
    request.state.identity = identity
    return identity


def require_roles(*roles: Role) -> object:
    """A dependency that admits only identities with one of ``roles``."""

    def guard(identity: Annotated[Identity, Depends(_caller)]) -> Identity:
        if identity.role not in roles:
            raise RoleError(f"this endpoint is not open to the {identity.role.value} role")
        return identity

    return Depends(guard)


AnyCaller = Annotated[Identity, Depends(_caller)]
OrgCaller = Annotated[Identity, require_roles(Role.ORG)]
ResearcherCaller = Annotated[Identity, require_roles(Role.RESEARCHER)]
AdminCaller = Annotated[Identity, require_roles(Role.ADMIN)]
AuditorCaller = Annotated[Identity, require_roles(Role.AUDITOR, Role.ADMIN)]
