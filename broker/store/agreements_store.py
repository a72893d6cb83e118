"""Data-sharing agreements in Redis: one hash per agreement and a set of every id.

The hash holds ``terms`` (the terms as JSON, never changed after creation),
``created_at``, ``created_by``, ``revoked_at`` and ``revoked_by`` once revoked, and one
``appr:<org>`` field per approving organisation (the time it approved). Decisions
(who may approve, what status means) are broker/agreements.py's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from broker.store import keyspace
from broker.store.client import Store

__all__ = [
    "StoredAgreement",
    "add_approval",
    "insert_agreement",
    "list_agreement_ids",
    "load_agreement",
    "mark_revoked",
]

_APPROVAL = "appr:"


@dataclass(frozen=True, slots=True)
class StoredAgreement:
    """An agreement's fields as stored.

    Attributes:
        id: the agreement id.
        terms_json: the terms as JSON.
        created_at: ISO time of creation.
        created_by: who created it (an identity name, or ``operator``).
        approvals: organisation -> ISO time it approved.
        revoked_at: ISO time of revocation, or ``None``.
        revoked_by: who revoked it, or ``None``.
    """

    id: str
    terms_json: str
    created_at: str
    created_by: str
    approvals: dict[str, str]
    revoked_at: str | None
    revoked_by: str | None


def insert_agreement(
    store: Store, *, agreement_id: str, terms_json: str, created_at: str, created_by: str
) -> bool:
    """Store a new agreement; False when the id is taken."""
    key = keyspace.agreement(agreement_id)
    if not store.redis.hsetnx(key, "terms", terms_json):
        return False
    # Two slots on a cluster, so two writes, the agreement first: a crash between them
    # leaves an agreement readable by id but not yet listed, never a listed empty one.
    store.redis.hset(key, mapping={"created_at": created_at, "created_by": created_by})
    store.redis.sadd(keyspace.agreements_all(), agreement_id)
    return True


def load_agreement(store: Store, agreement_id: str) -> StoredAgreement | None:
    """The stored agreement, or ``None``."""
    raw = cast(dict[bytes, bytes], store.redis.hgetall(keyspace.agreement(agreement_id)))
    if b"terms" not in raw:
        return None
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    approvals = {
        name[len(_APPROVAL) :]: when for name, when in fields.items() if name.startswith(_APPROVAL)
    }
    return StoredAgreement(
        id=agreement_id,
        terms_json=fields["terms"],
        created_at=fields.get("created_at", ""),
        created_by=fields.get("created_by", ""),
        approvals=dict(sorted(approvals.items())),
        revoked_at=fields.get("revoked_at"),
        revoked_by=fields.get("revoked_by"),
    )


def list_agreement_ids(store: Store) -> list[str]:
    """Every agreement id, sorted."""
    ids = cast(set[bytes], store.redis.smembers(keyspace.agreements_all()))
    return sorted(i.decode() for i in ids)


def add_approval(store: Store, *, agreement_id: str, org: str, when: str) -> bool:
    """Record ``org``'s approval (the first time counts); False when it had approved."""
    return bool(store.redis.hsetnx(keyspace.agreement(agreement_id), _APPROVAL + org, when))


def mark_revoked(store: Store, *, agreement_id: str, when: str, by: str) -> bool:
    """Revoke the agreement; False when it was already revoked."""
    key = keyspace.agreement(agreement_id)
    if not store.redis.hsetnx(key, "revoked_at", when):
        return False
    store.redis.hset(key, "revoked_by", by)
    return True
