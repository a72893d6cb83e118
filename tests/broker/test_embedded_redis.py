from __future__ import annotations

import os
import socket

import pytest

from broker.store.embedded import EmbeddedRedis, find_redis_server


def _ping(path: str) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        sock.sendall(b"PING\r\n")
        return sock.recv(16)


def test_binary_is_found() -> None:
    assert find_redis_server().name == "redis-server"


def test_starts_with_aof_and_stops_without_orphan(fresh_redis_dir) -> None:
    server = EmbeddedRedis(fresh_redis_dir).start()
    pid = server.pid
    assert pid is not None
    assert _ping(str(server.socket_path)).startswith(b"+PONG")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(server.socket_path))
        sock.sendall(b"CONFIG GET appendonly\r\n")
        assert b"yes" in sock.recv(128)
    server.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_stale_server_from_a_crashed_owner_is_replaced(fresh_redis_dir) -> None:
    first = EmbeddedRedis(fresh_redis_dir).start()
    stale, first._process = first._process, None  # the owner "crashes" without stopping it
    assert stale is not None
    second = EmbeddedRedis(fresh_redis_dir).start()
    try:
        assert stale.wait(5) == 0  # the stale server was shut down, not orphaned
        assert second.pid != stale.pid
        assert _ping(str(second.socket_path)).startswith(b"+PONG")
    finally:
        second.stop()
