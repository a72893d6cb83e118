"""Data-sharing agreements: create (operator), read, approve (contributors), revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from broker.agreements import (
    AGREEMENT_ID_PATTERN,
    approve_agreement,
    create_agreement,
    get_agreement,
    list_agreements,
    may_see,
    revoke_agreement,
)
from broker.api.responses import conflict
from broker.deps import AdminCaller, AnyCaller, OrgCaller, StoreDep
from broker.errors import NotFoundOrForbiddenError
from keys.wire import Role
from keys.wire_release import AgreementOut, AgreementTerms

__all__ = ["AgreementId", "router"]

router = APIRouter(tags=["agreements"])

AgreementId = Annotated[str, Path(pattern=AGREEMENT_ID_PATTERN)]


@router.post("/agreements", response_model=AgreementOut, status_code=status.HTTP_201_CREATED)
def create(body: AgreementTerms, caller: AdminCaller, store: StoreDep) -> AgreementOut:
    """Create an agreement in draft; each contributing organisation then approves it."""
    agreement = create_agreement(store, body, created_by=caller.name, role=caller.role.value)
    return agreement.to_wire()


@router.get("/agreements", response_model=list[AgreementOut])
def list_visible(caller: AnyCaller, store: StoreDep) -> list[AgreementOut]:
    """The agreements the caller contributes to, receives under or is named on."""
    return [a.to_wire() for a in list_agreements(store) if may_see(a, caller)]


@router.get("/agreements/{agreement_id}", response_model=AgreementOut)
def show(agreement_id: AgreementId, caller: AnyCaller, store: StoreDep) -> AgreementOut:
    """One agreement, with its status now."""
    agreement = get_agreement(store, agreement_id)
    if not may_see(agreement, caller):
        raise NotFoundOrForbiddenError()
    return agreement.to_wire()


@router.post(
    "/agreements/{agreement_id}/approve",
    response_model=AgreementOut,
    responses=conflict("the agreement is revoked or expired: it cannot be approved"),
)
def approve(agreement_id: AgreementId, caller: OrgCaller, store: StoreDep) -> AgreementOut:
    """Approve as a contributing organisation (with the organisation's own credential)."""
    return approve_agreement(store, agreement_id, org=caller).to_wire()


@router.post("/agreements/{agreement_id}/revoke", response_model=AgreementOut)
def revoke(agreement_id: AgreementId, caller: AnyCaller, store: StoreDep) -> AgreementOut:
    """Revoke at once: the operator, or a contributing organisation withdrawing."""
    agreement = get_agreement(store, agreement_id)
    allowed = caller.role is Role.ADMIN or (
        caller.role is Role.ORG and caller.name in agreement.contributors
    )
    if not allowed:
        raise NotFoundOrForbiddenError()
    return revoke_agreement(store, agreement_id, by=caller.name, role=caller.role.value).to_wire()
