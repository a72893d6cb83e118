"""Scope leases: which link worker links a linkage domain (broker/worker.py).

A lease is one key per domain (``{domain}:lease``, in the domain's slot) holding the
owner's id with a time to live; it covers every linkage scope of the domain (while its
key rotates, the active scope and the one being built: broker/rotation.py). Taking it is
``SET NX``; renewing and giving it back compare the owner first, in one script, so a
worker whose lease ran out can neither renew nor drop its successor's. A lease only
decides who *should* link: what keeps a stale worker from writing is the scope's
generation fence (broker/store/linkage_store.py).
"""

from __future__ import annotations

from typing import cast

from broker.store import keyspace
from broker.store.client import Store
from broker.store.rotation_store import active_scope, get_rotation

__all__ = ["claim_scope", "drop_scope_leases", "release_scope", "scope_holder"]

_CLAIM = r"""
local held = redis.call('GET', KEYS[1])
if not held then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
if held == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_RELEASE = r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _lease_key(scope: str) -> str:
    return keyspace.linkage_key(scope, keyspace.LINK_LEASE)


def claim_scope(store: Store, scope: str, *, owner: str, ttl_seconds: float) -> bool:
    """Take or renew ``owner``'s lease on domain ``scope``; False if another worker holds it.

    A lease newly taken (not renewed) means its previous holder's lease ran out: dead or
    stalled. Its linkage locks, if it died inside a slice, would stay for the lock's own
    two minutes; they are dropped here (every scope of the domain) so the domain is taken
    over after the lease alone. A stalled holder that wakes up is refused by the
    generation fence when it writes.
    """
    result = int(
        store.redis.register_script(_CLAIM)(
            keys=[_lease_key(scope)], args=[owner, max(1, int(ttl_seconds * 1000))]
        )
    )
    if result == 2:
        scopes = {scope, active_scope(store, scope)}
        rotation = get_rotation(store, scope)
        if rotation is not None:
            scopes |= {s for s in (rotation.active, rotation.target) if s}
        for linkage in sorted(scopes):  # one key per call: each scope has its own slot
            store.redis.delete(keyspace.linkage_key(linkage, keyspace.LINK_LOCK))
    return result > 0


def release_scope(store: Store, scope: str, *, owner: str) -> None:
    """Give ``owner``'s lease on ``scope`` back (nothing if it is no longer theirs)."""
    store.redis.register_script(_RELEASE)(keys=[_lease_key(scope)], args=[owner])


def scope_holder(store: Store, scope: str) -> str | None:
    """The owner id holding ``scope``'s lease, if any."""
    raw = cast(bytes | None, store.redis.get(_lease_key(scope)))
    return raw.decode() if raw is not None else None


def drop_scope_leases(store: Store) -> int:
    """Delete every scope lease; for a broker that knows no other worker can hold one.

    Returns:
        Leases deleted.
    """
    pattern = keyspace.linkage_key("*", keyspace.LINK_LEASE)
    keys = list(store.redis.scan_iter(match=pattern, count=1000))
    return int(store.redis.delete(*keys)) if keys else 0
