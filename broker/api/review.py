"""The calling organisation's review list: doubts about its own records (docs/review.md)."""

from __future__ import annotations

from fastapi import APIRouter

from broker.deps import OrgCaller, RuntimeDep
from broker.review import build_review
from keys.wire_review import ReviewOut

__all__ = ["router"]

router = APIRouter(tags=["review"])


@router.get("/review", response_model=ReviewOut)
def review(caller: OrgCaller, runtime: RuntimeDep) -> ReviewOut:
    """Possible matches and conflicts that involve one of the caller's own records.

    Each item is the caller's own reference, the kind of doubt, the other record's dataset
    id and which evidence agreed or disagreed; nothing else of the other record. Audited.
    503 ``linkage_busy`` when a batch of one of the caller's domains stays half linked.
    """
    return build_review(runtime.store, caller)
