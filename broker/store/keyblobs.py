"""Organisations' identity public keys and the wrapped domain-key blobs held for them.

The broker relays the blobs and cannot open them: they are wrapped (HPKE) to the
organisation's own key, which never leaves the organisation.
"""

from __future__ import annotations

from typing import cast

from broker.errors import NotFoundOrForbiddenError, ValidationFailedError
from broker.store import keyspace
from broker.store.client import Store
from keys.errors import KeystoreFormatError
from keys.wire import PublicKeyRegistration
from keys.wrapping import BlobHeader, parse_blob_header

__all__ = [
    "MAX_BLOB_BYTES",
    "check_blob",
    "get_blob",
    "get_public_key",
    "list_blobs",
    "put_blob",
    "set_public_key",
]

MAX_BLOB_BYTES = 49152


def check_blob(blob: bytes, *, source: str, org: str | None = None) -> BlobHeader:
    """The clear header of a wrapped blob (the broker never opens the rest).

    Raises:
        ValidationFailedError: not a blob, too large, or wrapped for another organisation
            than ``org``.
    """
    if len(blob) > MAX_BLOB_BYTES:
        raise ValidationFailedError(f"{source}: a wrapped blob is at most {MAX_BLOB_BYTES} bytes")
    try:
        header, _ = parse_blob_header(blob, source=source)
    except KeystoreFormatError as exc:
        raise ValidationFailedError(str(exc)) from None
    if org is not None and header.org != org:
        raise ValidationFailedError(f"{source}: the blob was wrapped for another organisation")
    return header


def set_public_key(store: Store, *, org: str, key: PublicKeyRegistration, now: str) -> None:
    """Register (or replace) the organisation's identity public key."""
    store.redis.hset(
        keyspace.org_public_key(org),
        mapping={"registration": key.model_dump_json(), "registered_at": now},
    )


def get_public_key(store: Store, *, org: str) -> PublicKeyRegistration:
    """The organisation's registered public key.

    Raises:
        NotFoundOrForbiddenError: none registered.
    """
    raw = cast(bytes | None, store.redis.hget(keyspace.org_public_key(org), "registration"))
    if raw is None:
        raise NotFoundOrForbiddenError()
    return PublicKeyRegistration.model_validate_json(raw)


def _field(domain: str, key_version: str) -> str:
    return f"{domain}/{key_version}"


def put_blob(store: Store, *, org: str, domain: str, key_version: str, blob: bytes) -> None:
    """Hold a wrapped blob for ``org`` (replacing one for the same domain and version)."""
    store.redis.hset(keyspace.org_blobs(org), _field(domain, key_version), blob)


def list_blobs(store: Store, *, org: str) -> list[tuple[str, str, bytes]]:
    """Every blob held for ``org``: ``(domain, key_version, blob)``, sorted."""
    raw = cast(dict[bytes, bytes], store.redis.hgetall(keyspace.org_blobs(org)))
    out = []
    for field, blob in sorted(raw.items()):
        domain, _, version = field.decode().partition("/")
        out.append((domain, version, blob))
    return out


def get_blob(store: Store, *, org: str, domain: str, key_version: str) -> bytes:
    """One blob held for ``org``.

    Raises:
        NotFoundOrForbiddenError: none for that domain and version.
    """
    blob = cast(
        bytes | None, store.redis.hget(keyspace.org_blobs(org), _field(domain, key_version))
    )
    if blob is None:
        raise NotFoundOrForbiddenError()
    return blob
