"""Operator dashboard sessions: keyed digest of a random id -> who logged in, with an expiry.

The browser holds the random session id in a cookie; Redis holds only its keyed digest
(:func:`keys.derive.digest_session_id`), so a copy of the AOF or a backup yields no
session to present. The credential the session was opened with is never stored, only
its keyed digest, so a rotated or revoked credential ends the session at once.
"""

from __future__ import annotations

from typing import cast

from broker.store import keyspace
from broker.store.client import Store

__all__ = [
    "clear_sign_in_failures",
    "count_sign_in_failure",
    "delete_session",
    "put_session",
    "sign_in_failures",
    "touch_session",
]


def put_session(store: Store, session_digest: str, data: bytes, *, ttl: int) -> None:
    """Store a new session under its digest for ``ttl`` seconds."""
    store.redis.set(keyspace.session(session_digest), data, ex=ttl)


def touch_session(store: Store, session_digest: str, *, ttl: int) -> bytes | None:
    """The session's data, its expiry pushed ``ttl`` seconds on; ``None`` if expired."""
    return cast(bytes | None, store.redis.getex(keyspace.session(session_digest), ex=ttl))


def delete_session(store: Store, session_digest: str) -> None:
    """End a session (logout, or its credential changed)."""
    store.redis.delete(keyspace.session(session_digest))


def sign_in_failures(store: Store, client: str) -> int:
    """Failed dashboard sign-ins from ``client`` (an address) in the current window."""
    return int(cast(bytes | None, store.redis.get(keyspace.sign_in_failures(client))) or 0)


def count_sign_in_failure(store: Store, client: str, *, window: int) -> int:
    """Count one more failed sign-in from ``client``; the count lives ``window`` seconds.

    The window restarts with each failure, so a client that keeps failing stays locked
    out until it has been quiet for ``window`` seconds.
    """
    key = keyspace.sign_in_failures(client)
    pipe = store.redis.pipeline(transaction=True)
    pipe.incr(key)
    pipe.expire(key, window)
    return int(pipe.execute()[0])


def clear_sign_in_failures(store: Store, client: str) -> None:
    """Forget ``client``'s failures (it signed in)."""
    store.redis.delete(keyspace.sign_in_failures(client))
