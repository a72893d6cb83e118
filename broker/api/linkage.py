"""The linkage report: counts only, for administrators (auditors read the audit only)."""

from __future__ import annotations

from fastapi import APIRouter

from broker.deps import AdminCaller, RuntimeDep
from broker.linkage_report import LinkageReportOut, build_linkage_report

__all__ = ["router"]

router = APIRouter(tags=["linkage"])


@router.get("/linkage/report", response_model=LinkageReportOut)
def linkage_report(caller: AdminCaller, runtime: RuntimeDep) -> LinkageReportOut:
    """Records, persons, links by match key and by dataset pair, ambiguous and conflicting
    tokens, and each dataset's quality grade, per linkage domain."""
    return build_linkage_report(runtime.store)
