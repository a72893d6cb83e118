"""Operator commands attach to a serving broker's redis-server and never replace it."""

from __future__ import annotations

import socket

import pytest

from broker.store.client import open_store
from broker.store.embedded import EmbeddedRedis, RedisUnavailableError


def test_attach_uses_the_running_server(fresh_redis_dir) -> None:
    server = EmbeddedRedis(fresh_redis_dir).start()
    try:
        store = open_store(None, redis_dir=fresh_redis_dir, durable_writes=False, attach=True)
        try:
            store.redis.set(b"attach-check", b"1")
            assert store.redis.get(b"attach-check") == b"1"
        finally:
            store.close()
        assert server.pid is not None and server.running  # still the same, still up
    finally:
        server.stop()


def test_a_server_that_does_not_answer_is_reported_not_replaced(fresh_redis_dir) -> None:
    # Something holds the socket but never answers (a broker's Redis stuck under load).
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(fresh_redis_dir / "redis.sock"))
    listener.listen()
    try:
        with pytest.raises(RedisUnavailableError, match="does not answer"):
            open_store(None, redis_dir=fresh_redis_dir, attach=True, attach_wait=0.5)
        assert (fresh_redis_dir / "redis.sock").exists()
        assert not (fresh_redis_dir / "redis.pid").exists()  # no second server was started
    finally:
        listener.close()
