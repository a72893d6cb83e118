"""Shared fixtures: a real redis-server (the embedded module) and a real broker per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from broker.store.embedded import EmbeddedRedis
from tests.support.cluster_support import RedisClusterSet, SentinelSet
from tests.support.harness import BrokerProcess, start_broker

ROOT = Path(__file__).resolve().parent.parent

# Hypothesis's per-example deadline is a timed assertion: on a loaded 2-core machine a
# property over real HMACs or a real redis-server can pass its 200 ms and fail a test whose
# behaviour is right. Speed is measured in `make bench`, never asserted here.
settings.register_profile("tessera", deadline=None)
settings.load_profile("tessera")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to test a compiled module older than its source (it would test the old code).

    ``make setup`` compiles the hot paths with mypyc into ``*.so`` files beside the
    sources, and Python imports those first; an edit since then needs ``make setup``.
    """
    stale = [
        str(source.relative_to(ROOT))
        for package in ("keys", "client_sdk", "broker")
        for compiled in (ROOT / package).rglob("*.so")
        if (source := compiled.with_name(compiled.name.split(".")[0] + ".py")).exists()
        and source.stat().st_mtime > compiled.stat().st_mtime
    ]
    if stale:
        pytest.exit(f"compiled module older than its source, run `make setup`: {stale}", 2)


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


@pytest.fixture(scope="session")
def broker_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """A real broker for the whole session (one per xdist worker), shared by many tests.

    ``tessera-broker serve`` runs as a subprocess on a free port, with its own data
    directory, keystore and embedded redis-server. The yielded
    :class:`tests.support.harness.BrokerProcess` gives ``.url``, ``.redis_url``, ``.runtime`` (an
    in-process runtime on the same store), ``.add_org()`` / ``.add_identity(role, name)``
    (credentials made directly in the store), ``.revoke(name)``, ``.client(credential)``
    (httpx), ``.sdk_env(credential)`` and ``.admin_env()`` (environments for the CLIs).
    Tests share it: give every org, dataset and researcher a fresh name
    (:func:`tests.support.harness.unique`), and never stop or kill it (start your own broker
    with :func:`tests.support.harness.start_broker` for that).
    """
    broker = start_broker(tmp_path_factory.mktemp("broker"))
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterSet]:
    """A Redis Cluster of six loopback nodes (three masters, three replicas), once per
    session (and xdist worker), from the same redis-server binary as ``redis_server``."""
    cluster = RedisClusterSet(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    """A master, its replica and three Sentinels on loopback, once per session."""
    sentinels = SentinelSet(tmp_path_factory.mktemp("sentinel"))
    try:
        yield sentinels.start()
    finally:
        sentinels.stop()
