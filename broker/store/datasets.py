"""Dataset declarations, per organisation (dataset id ``org/name``)."""

from __future__ import annotations

import json
from typing import cast

from broker.errors import ConflictError, NotFoundOrForbiddenError
from broker.store import keyspace
from broker.store.client import Store
from keys.wire import DatasetDeclaration, DatasetInfoOut

__all__ = ["dataset_id", "declare_dataset", "get_dataset", "list_all_datasets", "list_datasets"]


def dataset_id(org: str, name: str) -> str:
    """The broker-wide id of an organisation's dataset."""
    return f"{org}/{name}"


def declare_dataset(
    store: Store, *, org: str, declaration: DatasetDeclaration, now: str
) -> tuple[DatasetInfoOut, bool]:
    """Store a declaration; declaring the same thing again is a no-op.

    Returns:
        The dataset, and whether it was new.

    Raises:
        ConflictError: the organisation already declared this name differently.
    """
    ds_id = dataset_id(org, declaration.name)
    info = DatasetInfoOut(**declaration.model_dump(), org=org, created_at=now)
    key = keyspace.dataset(ds_id)
    if store.redis.hsetnx(key, "declaration", info.model_dump_json()):
        pipe = store.redis.pipeline(transaction=False)
        pipe.sadd(keyspace.org_datasets(org), declaration.name)
        pipe.sadd(keyspace.datasets_all(), ds_id)
        pipe.execute()
        return info, True
    existing = get_dataset(store, org=org, name=declaration.name)
    same = existing.model_dump(exclude={"created_at", "batches"}) == info.model_dump(
        exclude={"created_at", "batches"}
    )
    if not same:
        raise ConflictError(
            f"dataset {declaration.name!r} is already declared with other settings",
        )
    return existing, False


def _load(store: Store, ds_id: str) -> DatasetInfoOut | None:
    raw = cast(bytes | None, store.redis.hget(keyspace.dataset(ds_id), "declaration"))
    if raw is None:
        return None
    batches = store.redis.zcard(keyspace.dataset_batches(ds_id))
    return DatasetInfoOut(**{**json.loads(raw), "batches": batches})


def get_dataset(store: Store, *, org: str, name: str) -> DatasetInfoOut:
    """The organisation's dataset ``name``.

    Raises:
        NotFoundOrForbiddenError: no such dataset for this organisation (another
            organisation's dataset of that name answers the same).
    """
    found = _load(store, dataset_id(org, name))
    if found is None:
        raise NotFoundOrForbiddenError()
    return found


def list_datasets(store: Store, *, org: str) -> list[DatasetInfoOut]:
    """The organisation's datasets, by name."""
    names = cast(set[bytes], store.redis.smembers(keyspace.org_datasets(org)))
    found = [_load(store, dataset_id(org, n.decode())) for n in sorted(names)]
    return [d for d in found if d is not None]


def list_all_datasets(store: Store) -> list[DatasetInfoOut]:
    """Every dataset of every organisation (operator and report use)."""
    ids = cast(set[bytes], store.redis.smembers(keyspace.datasets_all()))
    found = [_load(store, i.decode()) for i in sorted(ids)]
    return [d for d in found if d is not None]
