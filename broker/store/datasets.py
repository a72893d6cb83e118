"""Dataset declarations, per organisation (dataset id ``org/name``), and opt-out registers.

An organisation declares only ``records`` datasets. Only the broker operator makes one an
opt-out register (:func:`designate_opt_out_register`), naming the body approved to hold
it: the dataset's kind becomes ``opt_out`` and its hash keeps who holds the register and
since when, for the public register.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import cast

from broker.errors import BadRequestError, ConflictError, NotFoundOrForbiddenError, RoleError
from broker.store import keyspace
from broker.store.client import Store
from keys.wire import DatasetDeclaration, DatasetInfoOut, DatasetKind

__all__ = [
    "OptOutRegister",
    "dataset_id",
    "declare_dataset",
    "designate_opt_out_register",
    "get_dataset",
    "list_all_datasets",
    "list_datasets",
    "list_opt_out_registers",
    "set_key_version",
]

_REGISTER_FIELD = "opt_out_register"


@dataclass(frozen=True, slots=True)
class OptOutRegister:
    """A dataset the operator made an opt-out register, and the body that holds it."""

    dataset: str
    body: str
    since: str


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
        RoleError: the declaration asks for an opt-out register (only the operator makes one).
        ConflictError: the organisation already declared this name differently.
    """
    if declaration.kind is DatasetKind.OPT_OUT:
        raise RoleError(
            "only the broker operator makes a dataset an opt-out register: declare it as a "
            "records dataset with no payload, upload it, and ask the operator to designate it"
        )
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
    # A register the operator designated was declared as records: that is still alike.
    exclude = {"created_at", "batches", "kind"}
    same = existing.model_dump(exclude=exclude) == info.model_dump(exclude=exclude)
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


def set_key_version(store: Store, *, org: str, name: str, key_version: str) -> None:
    """Declare the dataset under ``key_version`` (a key rotation's switch, broker/rotation.py).

    Raises:
        NotFoundOrForbiddenError: no such dataset.
    """
    info = get_dataset(store, org=org, name=name)
    moved = info.model_copy(update={"key_version": key_version})
    key = keyspace.dataset(dataset_id(org, name))
    store.redis.hset(key, "declaration", moved.model_dump_json(exclude={"batches"}))


def designate_opt_out_register(
    store: Store, *, org: str, name: str, body: str, now: str
) -> tuple[OptOutRegister, bool]:
    """Make the dataset ``org/name`` an opt-out register held by ``body`` (the operator's act).

    Returns:
        The register, and whether it was new (designating it again for the same body is a
        no-op).

    Raises:
        NotFoundOrForbiddenError: no such dataset.
        BadRequestError: it carries payload columns (a register is tokens only) or ``body``
            is empty.
        ConflictError: it is already the register of another body.
    """
    body = " ".join(body.split())
    if not body or len(body) > 200:
        raise BadRequestError("name the body that holds the register (1 to 200 characters)")
    ds_id = dataset_id(org, name)
    info = get_dataset(store, org=org, name=name)
    if info.payload_columns:
        raise BadRequestError(
            f"{ds_id} carries payload columns: an opt-out register is tokens only"
        )
    register = OptOutRegister(ds_id, body, now)
    key = keyspace.dataset(ds_id)
    raw = json.dumps({"body": body, "since": now}).encode()
    if not store.redis.hsetnx(key, _REGISTER_FIELD, raw):
        existing = _register(store, ds_id)
        if existing is None or existing.body != body:
            raise ConflictError(f"{ds_id} is already the opt-out register of another body")
        return existing, False
    declared = info.model_copy(update={"kind": DatasetKind.OPT_OUT})
    store.redis.hset(key, "declaration", declared.model_dump_json(exclude={"batches"}))
    return register, True


def _register(store: Store, ds_id: str) -> OptOutRegister | None:
    raw = cast(bytes | None, store.redis.hget(keyspace.dataset(ds_id), _REGISTER_FIELD))
    if raw is None:
        return None
    held = json.loads(raw)
    return OptOutRegister(ds_id, str(held["body"]), str(held["since"]))


def list_opt_out_registers(store: Store) -> list[OptOutRegister]:
    """Every opt-out register the operator designated, by dataset id."""
    ids = cast(set[bytes], store.redis.smembers(keyspace.datasets_all()))
    found = [_register(store, i.decode()) for i in sorted(ids)]
    return [r for r in found if r is not None]
