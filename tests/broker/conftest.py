"""Fixtures for broker tests that need a Redis of their own to empty between tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from broker.store.client import Store
from broker.store.embedded import EmbeddedRedis


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A redis-server for one test module alone.

    The session's ``redis_server`` is shared by every module an xdist worker runs, in any
    order, so a test must never empty it; a module whose tests each start from an empty
    database (the audit log, the dashboard) uses this one instead.
    """
    server = EmbeddedRedis(tmp_path_factory.mktemp("private-redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def flushed_store(private_redis: EmbeddedRedis) -> Iterator[Store]:
    """A store on the module's private redis-server, emptied before the test."""
    with Store(private_redis.url) as store:
        store.redis.flushdb()
        yield store
