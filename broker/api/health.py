"""Liveness and readiness: no credential, nothing about the data."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from broker.deps import RuntimeDep
from keys.wire import Health

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up and serving."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(runtime: RuntimeDep) -> Health | JSONResponse:
    """Ready for traffic: Redis answers."""
    if runtime.store.ping():
        return Health(status="ok")
    body = Health(status="unavailable", detail="store does not answer")
    return JSONResponse(status_code=503, content=body.model_dump())
