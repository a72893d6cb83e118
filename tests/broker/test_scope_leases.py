"""Scope leases (broker/store/leases.py) and the generation fence behind them.

A lease says which link worker should link a scope; the fence is what stops a worker that
lost its lease (stalled, not dead) from writing over the one that took the scope over.
"""

from __future__ import annotations

import hashlib
import itertools
import time

import pytest

from broker.errors import LinkageBusyError
from broker.linkage import DatasetInfo, IncomingRecord, Linker
from broker.store import keyspace
from broker.store.client import Store
from broker.store.leases import claim_scope, drop_scope_leases, release_scope, scope_holder
from broker.store.linkage_mirror import WriteSet
from broker.store.linkage_store import LinkageStore
from keys.derive import RecordRef, StoredToken

_scopes = itertools.count()
_DATASET = DatasetInfo(id="org/gp", org="org", one_record_per_person=True, key_names=("nhs",))


@pytest.fixture
def store(redis_server):
    with Store(redis_server.url) as opened:
        yield opened


@pytest.fixture
def scope() -> str:
    return f"lease-test-{next(_scopes)}-{time.monotonic_ns()}"


def _records(n: int, *, seed: str) -> list[IncomingRecord]:
    def digest(text: str) -> bytes:
        return hashlib.sha256(f"{seed}/{text}".encode()).digest()[:16]

    return [
        IncomingRecord(RecordRef(digest(f"ref{i}")), (StoredToken(digest(f"tok{i}")),), ())
        for i in range(n)
    ]


def _expire(store: Store, scope: str) -> None:
    """Let the scope's lease run out now (as it would after its TTL)."""
    store.redis.pexpire(keyspace.linkage_key(scope, keyspace.LINK_LEASE), 1)
    while scope_holder(store, scope) is not None:
        time.sleep(0.005)


def test_a_lease_is_held_by_one_owner_until_released(store, scope):
    assert claim_scope(store, scope, owner="a", ttl_seconds=30)
    assert not claim_scope(store, scope, owner="b", ttl_seconds=30)
    assert claim_scope(store, scope, owner="a", ttl_seconds=30)  # renewal
    release_scope(store, scope, owner="b")  # not b's: nothing happens
    assert scope_holder(store, scope) == "a"
    release_scope(store, scope, owner="a")
    assert scope_holder(store, scope) is None
    assert claim_scope(store, scope, owner="b", ttl_seconds=30)


def test_a_lapsed_lease_goes_to_the_next_worker_and_cannot_be_renewed(store, scope):
    assert claim_scope(store, scope, owner="a", ttl_seconds=30)
    _expire(store, scope)
    assert claim_scope(store, scope, owner="b", ttl_seconds=30)
    assert not claim_scope(store, scope, owner="a", ttl_seconds=30)
    release_scope(store, scope, owner="a")
    assert scope_holder(store, scope) == "b"


def test_dropping_leases_frees_every_scope(store, scope):
    other = scope + "-other"
    assert claim_scope(store, scope, owner="a", ttl_seconds=30)
    assert claim_scope(store, other, owner="a", ttl_seconds=30)
    assert drop_scope_leases(store) >= 2
    assert claim_scope(store, scope, owner="b", ttl_seconds=30)
    assert claim_scope(store, other, owner="b", ttl_seconds=30)


def test_a_stalled_worker_cannot_write_after_its_scope_was_taken_over(store, scope):
    stalled = LinkageStore(store.redis, scope=scope)
    assert claim_scope(store, scope, owner="stalled", ttl_seconds=30)
    Linker(stalled).link(_DATASET, _records(5, seed="first"), batch_id="b1")
    stalled.acquire()
    expected = stalled.next_generation()  # it read generation n and meant to write n + 1
    # It stalls holding the linkage lock; its lease runs out and another worker claims
    # the scope, which drops the lock (else the newcomer would wait minutes for it).
    _expire(store, scope)
    assert claim_scope(store, scope, owner="newcomer", ttl_seconds=30)
    newcomer = Linker(LinkageStore(store.redis, scope=scope))
    stats = newcomer.link(_DATASET, _records(5, seed="second"), batch_id="b2")
    assert stats.received == 5
    before = newcomer.report()
    with pytest.raises(LinkageBusyError, match="another worker linked this scope"):
        stalled.write(WriteSet(), expected)
    after = newcomer.report()
    assert after.records == before.records == 10
    assert after.persons == before.persons


def test_a_renewed_lease_keeps_the_holders_linkage_lock(store, scope):
    holder = LinkageStore(store.redis, scope=scope)
    assert claim_scope(store, scope, owner="a", ttl_seconds=30)
    token = holder.acquire()
    assert claim_scope(store, scope, owner="a", ttl_seconds=30)
    lock = keyspace.linkage_key(scope, keyspace.LINK_LOCK)
    assert store.redis.get(lock) == token.encode()
    holder.release(token)
