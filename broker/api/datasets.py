"""Dataset declarations of the calling organisation."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from broker.api.responses import conflict
from broker.audit import append_audit
from broker.deps import OrgCaller, RuntimeDep
from broker.runtime import utc_now
from broker.store.datasets import dataset_id, declare_dataset, get_dataset, list_datasets
from broker.store.limits import check_dataset_quota
from keys.wire import DatasetDeclaration, DatasetInfoOut, Name

__all__ = ["router"]

router = APIRouter(tags=["datasets"])


@router.post(
    "/datasets",
    response_model=DatasetInfoOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": DatasetInfoOut, "description": "already declared alike"},
        **conflict("declared before differently (`conflict`), or over a quota (`quota_exceeded`)"),
    },
)
def declare(
    body: DatasetDeclaration, caller: OrgCaller, runtime: RuntimeDep, response: Response
) -> DatasetInfoOut:
    """Declare a dataset (declaring the same again answers 200; differently, 409)."""
    check_dataset_quota(runtime.store, runtime.settings, org=caller.name, declaration=body)
    info, new = declare_dataset(runtime.store, org=caller.name, declaration=body, now=utc_now())
    if new:
        append_audit(
            runtime.store,
            identity=caller.name,
            role=caller.role.value,
            action="dataset.declare",
            dataset=dataset_id(caller.name, body.name),
        )
    else:
        response.status_code = status.HTTP_200_OK
    return info


@router.get("/datasets", response_model=list[DatasetInfoOut])
def list_mine(caller: OrgCaller, runtime: RuntimeDep) -> list[DatasetInfoOut]:
    """The calling organisation's datasets."""
    return list_datasets(runtime.store, org=caller.name)


@router.get("/datasets/{name}", response_model=DatasetInfoOut)
def show(name: Name, caller: OrgCaller, runtime: RuntimeDep) -> DatasetInfoOut:
    """One of the calling organisation's datasets."""
    return get_dataset(runtime.store, org=caller.name, name=name)
