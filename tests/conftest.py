"""Shared fixtures: a real redis-server (the embedded module) per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.store.embedded import EmbeddedRedis


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A private redis-server for the whole session (one per xdist worker)."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fresh_redis_dir(tmp_path: Path) -> Path:
    """A data directory for a test that starts, kills or restarts its own server."""
    path = tmp_path / "redis"
    path.mkdir()
    return path
