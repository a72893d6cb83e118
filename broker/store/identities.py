"""Identities and their credentials: only a keyed digest of a credential is stored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from broker.errors import ConflictError, NotFoundOrForbiddenError
from broker.store import keyspace
from broker.store.client import Store
from keys.wire import Role

__all__ = [
    "Identity",
    "create_identity",
    "find_identity",
    "identity_for_credential",
    "list_identities",
    "replace_credential",
    "revoke_identity",
    "set_identity_labels",
]


@dataclass(frozen=True, slots=True)
class Identity:
    """Someone the broker knows: an organisation, researcher, auditor or admin.

    ``display_name`` and ``ods_code`` (an organisation's NHS ODS code, e.g. ``L85540``) are
    optional, for people reading the register and dashboard; ``label`` shows them.
    """

    id: str
    name: str
    role: Role
    created_at: str
    revoked: bool
    display_name: str = ""
    ods_code: str = ""

    @property
    def label(self) -> str:
        """``Riverside Surgery (ODS L85540)`` as far as given, else the name."""
        title = self.display_name or self.name
        return f"{title} (ODS {self.ods_code})" if self.ods_code else title


def _decode(fields: dict[bytes, bytes]) -> Identity:
    return Identity(
        id=fields[b"id"].decode(),
        name=fields[b"name"].decode(),
        role=Role(fields[b"role"].decode()),
        created_at=fields[b"created_at"].decode(),
        revoked=fields.get(b"revoked", b"0") == b"1",
        display_name=fields.get(b"display_name", b"").decode(),
        ods_code=fields.get(b"ods_code", b"").decode(),
    )


def _load(store: Store, identity_id: str) -> Identity | None:
    fields = cast(dict[bytes, bytes], store.redis.hgetall(keyspace.identity(identity_id)))
    return _decode(fields) if fields else None


def create_identity(
    store: Store,
    *,
    identity_id: str,
    name: str,
    role: Role,
    digest: str,
    now: str,
    display_name: str = "",
    ods_code: str = "",
) -> Identity:
    """Store a new identity with the digest of its first credential.

    Raises:
        ConflictError: the name is taken (names are unique across roles).
    """
    if not store.redis.set(keyspace.identity_name(name), identity_id, nx=True):
        raise ConflictError(f"an identity named {name!r} already exists")
    pipe = store.redis.pipeline(transaction=False)
    pipe.hset(
        keyspace.identity(identity_id),
        mapping={
            "id": identity_id,
            "name": name,
            "role": role.value,
            "created_at": now,
            "revoked": "0",
            "digest": digest,
            "display_name": display_name,
            "ods_code": ods_code,
        },
    )
    pipe.set(keyspace.credential(digest), identity_id)
    pipe.sadd(keyspace.identities_all(), identity_id)
    pipe.execute()
    return Identity(
        identity_id, name, role, now, revoked=False, display_name=display_name, ods_code=ods_code
    )


def identity_for_credential(store: Store, digest: str) -> Identity | None:
    """The live identity a credential digest belongs to, or ``None`` (unknown or revoked)."""
    identity_id = cast(bytes | None, store.redis.get(keyspace.credential(digest)))
    if identity_id is None:
        return None
    identity = _load(store, identity_id.decode())
    if identity is None or identity.revoked:
        return None
    return identity


def find_identity(store: Store, name_or_id: str) -> Identity:
    """An identity by name or id.

    Raises:
        NotFoundOrForbiddenError: no such identity.
    """
    by_name = cast(bytes | None, store.redis.get(keyspace.identity_name(name_or_id)))
    identity = _load(store, by_name.decode() if by_name else name_or_id)
    if identity is None:
        raise NotFoundOrForbiddenError(f"no identity named or numbered {name_or_id!r}")
    return identity


def list_identities(store: Store) -> list[Identity]:
    """Every identity, revoked ones included, by name."""
    ids = cast(set[bytes], store.redis.smembers(keyspace.identities_all()))
    found = [_load(store, i.decode()) for i in ids]
    return sorted((i for i in found if i is not None), key=lambda i: i.name)


def revoke_identity(store: Store, identity: Identity) -> None:
    """Revoke the identity's credential: refused from the next request on."""
    key = keyspace.identity(identity.id)
    digest = cast(bytes | None, store.redis.hget(key, "digest"))
    # The identity and its credential key lie on two cluster slots, so two writes; the
    # revoked flag first: it alone refuses the credential (identity_for_credential).
    store.redis.hset(key, "revoked", "1")
    if digest:
        store.redis.delete(keyspace.credential(digest.decode()))


def replace_credential(store: Store, identity: Identity, digest: str) -> None:
    """Give the identity a new credential (the old one stops working), un-revoking it."""
    key = keyspace.identity(identity.id)
    old = cast(bytes | None, store.redis.hget(key, "digest"))
    # Two cluster slots, so three writes in an order a crash cannot exploit: the old
    # credential stops first, and the new one works only once the identity names it (so a
    # later revoke deletes it). A crash between them leaves no working credential; running
    # the command again finishes it.
    if old:
        store.redis.delete(keyspace.credential(old.decode()))
    store.redis.hset(key, mapping={"digest": digest, "revoked": "0"})
    store.redis.set(keyspace.credential(digest), identity.id)


def set_identity_labels(
    store: Store, identity: Identity, *, display_name: str, ods_code: str
) -> Identity:
    """Give an identity (an organisation registered earlier) a display name and ODS code."""
    store.redis.hset(
        keyspace.identity(identity.id),
        mapping={"display_name": display_name, "ods_code": ods_code},
    )
    return Identity(
        identity.id,
        identity.name,
        identity.role,
        identity.created_at,
        identity.revoked,
        display_name=display_name,
        ods_code=ods_code,
    )
