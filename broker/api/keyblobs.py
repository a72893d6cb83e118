"""Wrapped domain-key blobs: the custodian deposits them, only their organisation fetches.

An organisation can only address its own blobs (``/orgs/me``): there is no route by which
one organisation names another's.
"""

from __future__ import annotations

import base64
import binascii

from fastapi import APIRouter, status

from broker.audit import append_audit
from broker.deps import AdminCaller, OrgCaller, RuntimeDep
from broker.errors import NotFoundOrForbiddenError, ValidationFailedError
from broker.store.identities import find_identity
from broker.store.keyblobs import check_blob, get_blob, list_blobs, put_blob
from keys.wire import KeyBlob, KeyBlobInfo, Name, Role

__all__ = ["router"]

router = APIRouter(tags=["key blobs"])


@router.get("/orgs/me/key-blobs", response_model=list[KeyBlobInfo])
def my_blobs(caller: OrgCaller, runtime: RuntimeDep) -> list[KeyBlobInfo]:
    """The blobs held for the calling organisation (without their bytes)."""
    return [
        KeyBlobInfo(domain=d, key_version=v, size=len(b))
        for d, v, b in list_blobs(runtime.store, org=caller.name)
    ]


@router.get("/orgs/me/key-blobs/{domain}/{key_version}", response_model=KeyBlob)
def my_blob(domain: Name, key_version: Name, caller: OrgCaller, runtime: RuntimeDep) -> KeyBlob:
    """One wrapped blob of the calling organisation."""
    blob = get_blob(runtime.store, org=caller.name, domain=domain, key_version=key_version)
    append_audit(
        runtime.store, identity=caller.name, role=caller.role.value, action="keyblob.download"
    )
    return KeyBlob(domain=domain, key_version=key_version, blob=base64.b64encode(blob).decode())


@router.post("/orgs/{org}/key-blobs", status_code=status.HTTP_204_NO_CONTENT)
def deposit_blob(org: Name, body: KeyBlob, caller: AdminCaller, runtime: RuntimeDep) -> None:
    """Deposit a blob the custodian wrapped for ``org`` (admin only)."""
    try:
        identity = find_identity(runtime.store, org)
    except NotFoundOrForbiddenError:
        raise NotFoundOrForbiddenError() from None  # its message would name the input
    if identity.role is not Role.ORG:
        raise NotFoundOrForbiddenError()
    try:
        blob = base64.b64decode(body.blob, validate=True)
    except binascii.Error as exc:
        raise ValidationFailedError("blob: not base64") from exc
    header = check_blob(blob, source="blob", org=org)
    if (header.domain, header.version) != (body.domain, body.key_version):
        raise ValidationFailedError("blob: its header names another domain or key version")
    put_blob(runtime.store, org=org, domain=body.domain, key_version=body.key_version, blob=blob)
    append_audit(
        runtime.store,
        identity=caller.name,
        role=caller.role.value,
        organisation=org,
        action="keyblob.add",
    )
