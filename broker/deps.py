"""FastAPI dependencies: the runtime, the caller's identity from its bearer credential, roles.

Every route names the role it needs with one of the ``*Caller`` aliases, so a route without
a guard stands out in review. A revoked credential is refused from the next request on:
each request looks its digest up in Redis, nothing is cached.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from broker.errors import RoleError, UnauthorisedError
from broker.runtime import BrokerRuntime
from broker.store.client import Store
from broker.store.identities import Identity, identity_for_credential
from keys.wire import Role

__all__ = [
    "AdminCaller",
    "AnyCaller",
    "AuditorCaller",
    "OrgCaller",
    "ResearcherCaller",
    "RuntimeDep",
    "StoreDep",
    "get_runtime",
    "require_roles",
]

_bearer = HTTPBearer(auto_error=False, description="A credential from `tessera-broker admin`")


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
    if bearer is None or bearer.scheme.lower() != "bearer" or not bearer.credentials:
        raise UnauthorisedError()
    credential = bearer.credentials
    if len(credential) > 256:
        raise UnauthorisedError()
    identity = identity_for_credential(runtime.store, runtime.credential_digest(credential))
    if identity is None:
        raise UnauthorisedError()
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
