"""The broker's connection to Redis: an external URL, or the embedded redis-server.

Store modules take a :class:`Store` and issue their own commands; nothing outside
broker/store/ sees a Redis client.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis
from redis.cluster import RedisCluster

from broker.redis_target import RedisTarget
from broker.store import keyspace
from broker.store.connect import connect, describe
from broker.store.embedded import EmbeddedRedis, RedisUnavailableError

__all__ = ["Store", "open_store"]

logger = logging.getLogger(__name__)


class Store:
    """A Redis connection pool, with the embedded server it owns (if any).

    Args:
        url: redis-py URL (``redis://``, ``rediss://`` or ``unix://``), or a
            :class:`~broker.redis_target.RedisTarget` (TLS, Cluster, Sentinel).
        embedded: the embedded server this store started and stops on :meth:`close`.
        socket_timeout: seconds a command may take before the connection gives up.
        wait_replicas: replicas :meth:`wait_for_replicas` waits for (0: it returns at once).
        wait_timeout_ms: how long it waits for them.
    """

    def __init__(
        self,
        url: str | RedisTarget,
        *,
        embedded: EmbeddedRedis | None = None,
        socket_timeout: float = 30.0,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 5000,
    ) -> None:
        self.target = url if isinstance(url, RedisTarget) else RedisTarget(url)
        self.url = self.target.url
        self.embedded = embedded
        self.durable = False
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.redis: redis.Redis = connect(self.target, socket_timeout=socket_timeout)

    def wait_for_replicas(self, keys: list[str]) -> None:
        """Return once ``wait_replicas`` replicas of each master holding ``keys`` caught up.

        ``WAIT`` counts from the last write of the connection it is sent on, and redis-py
        does not tie a later command to the connection of an earlier write. So each
        master gets a small write of its own (:func:`keyspace.replica_probe`, in the slot
        of the key) and ``WAIT`` on the same connection, in one pipeline: a master
        replicates in order, so a replica that has the probe has every write before it.

        Raises:
            RedisUnavailableError: fewer replicas confirmed within ``wait_timeout_ms``.
        """
        if self.wait_replicas == 0 or not keys:
            return
        nodes: dict[str, tuple[redis.Redis, str]] = {}
        if isinstance(self.redis, RedisCluster):
            for key in keys:
                probe = keyspace.replica_probe(key)
                node = self.redis.get_node_from_key(probe)
                nodes.setdefault(node.name, (node.redis_connection, probe))
        else:
            nodes[""] = (self.redis, keyspace.replica_probe(keys[0]))
        for client, probe in nodes.values():
            pipe = client.pipeline(transaction=False)
            pipe.set(probe, b"1", px=60_000)
            pipe.wait(self.wait_replicas, self.wait_timeout_ms)
            acked = int(pipe.execute()[1])
            if acked < self.wait_replicas:
                raise RedisUnavailableError(
                    f"{acked} of {self.wait_replicas} Redis replicas confirmed the write within "
                    f"{self.wait_timeout_ms} ms (TESSERA_BROKER_REDIS_WAIT_REPLICAS); retry"
                )

    def ping(self) -> bool:
        """True when Redis answers."""
        try:
            return bool(self.redis.ping())
        except redis.RedisError:
            return False

    def require_durable_writes(self) -> None:
        """Make every acknowledged write reach the disk before Redis answers.

        Sets ``appendonly yes`` and ``appendfsync always``: Redis fsyncs once per event
        loop, so concurrent and pipelined writes share one fsync (group commit). On a
        cluster redis-py sends ``CONFIG SET`` to every node; through Sentinel it reaches
        the current master only (configure the replicas on the servers).
        """
        try:
            self.redis.config_set("appendonly", "yes")
            self.redis.config_set("appendfsync", "always")
        except redis.RedisError as exc:
            raise RedisUnavailableError(
                "Redis refused CONFIG SET appendfsync always: configure it on the server and "
                "set TESSERA_BROKER_DURABLE_WRITES=0"
            ) from exc
        self.durable = True

    def supervise(self) -> bool:
        """Restart the embedded redis-server if it died; True when it was restarted.

        It restarts from its append-only file, so nothing acknowledged is lost (every
        write is fsynced before Redis answers, see :meth:`require_durable_writes`).
        """
        embedded = self.embedded
        if embedded is None or embedded.running:
            return False
        logger.error("embedded redis-server exited; restarting it")
        embedded.start()
        self.redis.connection_pool.disconnect()
        if self.durable:
            self.require_durable_writes()
        return True

    def info(self, section: str) -> dict[str, Any]:
        """``INFO section`` as a dict."""
        return self.redis.info(section)

    def close(self) -> None:
        """Close connections and stop the embedded server, if this store owns one."""
        self.redis.close()
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _answers_within(store: Store, *, seconds: float) -> bool:
    """Whether ``store`` answers a PING within ``seconds`` (a loaded server may be slow)."""
    deadline = time.monotonic() + seconds
    while not store.ping():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)
    return True


def open_store(
    redis_url: str | RedisTarget | None,
    *,
    redis_dir: Path,
    durable_writes: bool = True,
    attach: bool = False,
    attach_wait: float = 10.0,
    maxmemory: int | None = None,
    wait_replicas: int = 0,
    wait_timeout_ms: int = 5000,
) -> Store:
    """Connect to ``redis_url``, or start the embedded redis-server under ``redis_dir``.

    Args:
        redis_url: an external server (a URL, or a target for TLS, Cluster or Sentinel),
            or ``None`` for the embedded one.
        redis_dir: data directory of the embedded server.
        durable_writes: switch the server to ``appendfsync always`` (see
            :meth:`Store.require_durable_writes`).
        attach: when an embedded server is already running under ``redis_dir`` (a
            broker is serving), use it rather than start one (the admin commands do).
        maxmemory: the embedded server's ``maxmemory`` in bytes (default: its own).
        wait_replicas: see :class:`Store` (an acknowledged commit waits for replicas).
        wait_timeout_ms: see :class:`Store`.

    Raises:
        RedisUnavailableError: the server cannot be reached or started.
    """
    embedded: EmbeddedRedis | None = None
    url: str | RedisTarget | None = redis_url
    if url is None and attach:
        probe = EmbeddedRedis(redis_dir)
        if probe.socket_path.exists():
            # A serving broker's server: use it, never replace it (starting one here would
            # stop it as stale). If it does not answer, say so rather than guess.
            running = Store(probe.url, socket_timeout=1.0)
            answered = _answers_within(running, seconds=attach_wait)
            running.redis.close()
            if not answered:
                raise RedisUnavailableError(
                    f"the broker's redis-server under {redis_dir} does not answer; "
                    "if no broker is serving, remove its redis.sock and retry"
                )
            url = probe.url
    if url is None:
        embedded = EmbeddedRedis(redis_dir, maxmemory=maxmemory).start()
        url = embedded.url
    store = Store(
        url, embedded=embedded, wait_replicas=wait_replicas, wait_timeout_ms=wait_timeout_ms
    )
    if not store.ping():
        store.close()
        raise RedisUnavailableError(f"{describe(store.target)} does not answer")
    if durable_writes:
        store.require_durable_writes()
    return store
