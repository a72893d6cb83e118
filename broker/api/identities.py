"""Who am I, and an organisation's identity public key."""

from __future__ import annotations

from fastapi import APIRouter, status

from broker.audit import append_audit
from broker.deps import AdminCaller, AnyCaller, OrgCaller, RuntimeDep
from broker.errors import NotFoundOrForbiddenError
from broker.runtime import utc_now
from broker.store.identities import find_identity
from broker.store.keyblobs import get_public_key, set_public_key
from keys.wire import IdentityOut, Name, PublicKeyRegistration, Role

__all__ = ["router"]

router = APIRouter(tags=["identities"])


@router.get("/whoami", response_model=IdentityOut)
def whoami(caller: AnyCaller) -> IdentityOut:
    """The identity the credential belongs to."""
    return IdentityOut(id=caller.id, name=caller.name, role=caller.role)


@router.put("/orgs/me/public-key", status_code=status.HTTP_204_NO_CONTENT)
def register_public_key(caller: OrgCaller, runtime: RuntimeDep, key: PublicKeyRegistration) -> None:
    """Register (or replace) the calling organisation's identity public key."""
    set_public_key(runtime.store, org=caller.name, key=key, now=utc_now())
    append_audit(
        runtime.store, identity=caller.name, role=caller.role.value, action="publickey.register"
    )


@router.get("/orgs/me/public-key", response_model=PublicKeyRegistration)
def my_public_key(caller: OrgCaller, runtime: RuntimeDep) -> PublicKeyRegistration:
    """The calling organisation's registered public key."""
    return get_public_key(runtime.store, org=caller.name)


@router.get("/orgs/{org}/public-key", response_model=PublicKeyRegistration)
def org_public_key(org: Name, caller: AdminCaller, runtime: RuntimeDep) -> PublicKeyRegistration:
    """An organisation's public key, for the custodian to wrap domain keys to (admin only)."""
    try:
        identity = find_identity(runtime.store, org)
    except NotFoundOrForbiddenError:
        raise NotFoundOrForbiddenError() from None  # its message would name the input
    if identity.role is not Role.ORG:
        raise NotFoundOrForbiddenError()
    return get_public_key(runtime.store, org=org)
