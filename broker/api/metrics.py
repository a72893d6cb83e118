"""``GET /metrics``: Prometheus text for a scraper holding the metrics token, or an admin.

Metrics carry no identifier and no dataset name, but they do say how busy each route is
and how far linkage lags, so they are not public: the scraper sends
``TESSERA_BROKER_METRICS_TOKEN`` as a bearer token (docs/deploy.md), and an administrator's
own credential also works, for a look by hand.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from broker import metrics as broker_metrics
from broker.deps import RuntimeDep
from broker.errors import RoleError, UnauthorisedError
from broker.runtime import BrokerRuntime
from broker.store.identities import identity_for_credential
from keys.wire import Role

__all__ = ["router"]

router = APIRouter(tags=["metrics"])

_bearer = HTTPBearer(
    auto_error=False, description="TESSERA_BROKER_METRICS_TOKEN, or an administrator credential"
)


def _admit(runtime: BrokerRuntime, credential: str) -> None:
    token = runtime.settings.metrics_token
    if token is not None and secrets.compare_digest(
        credential.encode(), token.get_secret_value().encode()
    ):
        return
    if len(credential) > 256:
        raise UnauthorisedError()
    identity = identity_for_credential(runtime.store, runtime.credential_digest(credential))
    if identity is None:
        raise UnauthorisedError()
    if identity.role is not Role.ADMIN:
        raise RoleError(f"this endpoint is not open to the {identity.role.value} role")


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {broker_metrics.CONTENT_TYPE: {}}}},
)
def metrics(
    runtime: RuntimeDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Response:
    """This process's metrics in the Prometheus text format."""
    if bearer is None or bearer.scheme.lower() != "bearer" or not bearer.credentials:
        raise UnauthorisedError()
    _admit(runtime, bearer.credentials)
    body = broker_metrics.render(runtime.store)
    return Response(content=body, media_type=broker_metrics.CONTENT_TYPE)
