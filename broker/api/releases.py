"""Releases under an active agreement: cohorts and aggregates to named researchers,
direct-care returns to named organisations."""

from __future__ import annotations

from fastapi import APIRouter

from broker.agreements import require_release
from broker.api.agreements import AgreementId
from broker.deps import OrgCaller, ResearcherCaller, RuntimeDep
from broker.release import release_aggregate, release_cohort, release_linked
from keys.wire_release import (
    AggregateOut,
    AggregateRequest,
    AgreementKind,
    CohortOut,
    CohortRequest,
    LinkedOut,
)

__all__ = ["router"]

router = APIRouter(tags=["releases"])


@router.post("/agreements/{agreement_id}/cohort", response_model=CohortOut)
def cohort(
    agreement_id: AgreementId, body: CohortRequest, caller: ResearcherCaller, runtime: RuntimeDep
) -> CohortOut:
    """A pseudonymised record-level cohort (research_record_level agreements)."""
    agreement = require_release(
        runtime.store,
        agreement_id,
        identity=caller,
        kinds=(AgreementKind.RESEARCH_RECORD_LEVEL,),
    )
    return release_cohort(
        runtime.store,
        agreement,
        body,
        identity=caller,
        pseudonym_master=runtime.secrets.pseudonym_master,
    )


@router.post("/agreements/{agreement_id}/aggregate", response_model=AggregateOut)
def aggregate(
    agreement_id: AgreementId,
    body: AggregateRequest,
    caller: ResearcherCaller,
    runtime: RuntimeDep,
) -> AggregateOut:
    """Counts with small-number protection (research_aggregate agreements)."""
    agreement = require_release(
        runtime.store, agreement_id, identity=caller, kinds=(AgreementKind.RESEARCH_AGGREGATE,)
    )
    return release_aggregate(runtime.store, agreement, body, identity=caller)


@router.get("/agreements/{agreement_id}/linked", response_model=LinkedOut)
def linked(agreement_id: AgreementId, caller: OrgCaller, runtime: RuntimeDep) -> LinkedOut:
    """For each of the caller's own references, the attributes released for direct care."""
    agreement = require_release(
        runtime.store, agreement_id, identity=caller, kinds=(AgreementKind.DIRECT_CARE,)
    )
    return release_linked(runtime.store, agreement, identity=caller)
