"""Operator dashboard sessions: a random id -> who logged in, with an expiry, in Redis.

The browser holds only the random session id in a cookie; the credential it logged in
with is never stored (only the identity it belongs to).
"""

from __future__ import annotations

from typing import cast

from broker.store import keyspace
from broker.store.client import Store

__all__ = ["delete_session", "put_session", "touch_session"]


def put_session(store: Store, session_id: str, data: bytes, *, ttl: int) -> None:
    """Store a new session for ``ttl`` seconds."""
    store.redis.set(keyspace.session(session_id), data, ex=ttl)


def touch_session(store: Store, session_id: str, *, ttl: int) -> bytes | None:
    """The session's data, its expiry pushed ``ttl`` seconds on; ``None`` if expired."""
    return cast(bytes | None, store.redis.getex(keyspace.session(session_id), ex=ttl))


def delete_session(store: Store, session_id: str) -> None:
    """End a session (logout)."""
    store.redis.delete(keyspace.session(session_id))
