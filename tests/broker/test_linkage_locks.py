"""A linkage lock left by a killed worker is dropped by a broker that owns its Redis."""

from __future__ import annotations

import redis

from broker.store.linkage_store import LinkageStore, drop_stale_locks


def test_stale_locks_are_dropped_and_the_lock_can_be_taken_again(redis_server) -> None:
    client = redis.Redis.from_url(redis_server.url)
    try:
        stores = [LinkageStore(client, scope=f"stale-lock-{i}") for i in range(2)]
        for store in stores:
            store.acquire()
        assert drop_stale_locks(client) >= 2
        for store in stores:
            store.release(store.acquire(wait_seconds=0.0))
    finally:
        client.close()
