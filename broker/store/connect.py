"""Which redis-py client the broker talks through: one node, a Redis Cluster or Sentinel.

This is the only module that chooses a client; every store module takes the
:class:`redis.Redis` it returns through :class:`broker.store.client.Store` and issues the
same commands whichever it is. On a cluster that works because every key that one
MULTI/EXEC, WATCH or Lua script touches shares a hash tag (docs/keyspace.md, "Running on
a Redis Cluster"), and :class:`redis.cluster.RedisCluster` routes each command by its key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import redis
from redis.cluster import RedisCluster
from redis.sentinel import Sentinel

__all__ = ["REDIS_SCHEMES", "RedisTarget", "connect", "parse_sentinels"]

REDIS_SCHEMES = ("redis", "rediss", "unix")
"""URL schemes ``TESSERA_BROKER_REDIS_URL`` takes (``rediss``: TLS to Redis)."""


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where the broker's Redis is and how to reach it.

    Attributes:
        url: a redis-py URL: one node (``redis://``, ``rediss://``, ``unix://``) or any
            node of a cluster; empty with Sentinel (the sentinels name the master).
        ca_file: CA bundle that signs the server's certificate (``rediss://`` only).
        cluster: talk Redis Cluster (slots, redirections) rather than one node.
        sentinels: ``(host, port)`` of each sentinel; empty unless Sentinel is used.
        sentinel_master: the master's name the sentinels monitor.
    """

    url: str = ""
    ca_file: Path | None = None
    cluster: bool = False
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_master: str = ""

    @property
    def uses_tls(self) -> bool:
        """Whether the connection to Redis is TLS (``rediss://``)."""
        return urlsplit(self.url).scheme == "rediss"


def parse_sentinels(text: str) -> tuple[tuple[str, int], ...]:
    """``host:port,host:port`` as pairs.

    Raises:
        ValueError: an entry without a host or a port between 1 and 65535 (one line).
    """
    nodes: list[tuple[str, int]] = []
    for entry in (part.strip() for part in text.split(",")):
        host, _, port = entry.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(
                f"TESSERA_BROKER_REDIS_SENTINEL: {entry!r} is not host:port "
                "(give them as host:port,host:port)"
            )
        nodes.append((host.strip("[]"), int(port)))
    return tuple(nodes)


def connect(target: RedisTarget, *, socket_timeout: float) -> redis.Redis:
    """A client for ``target`` (no command is sent yet).

    A :class:`~redis.cluster.RedisCluster` is returned typed as :class:`redis.Redis`: it
    offers the same command methods, pipelines (transactions and WATCH included, on keys
    of one slot) and scripts, which is all the store modules use.
    """
    options: dict[str, Any] = {"decode_responses": False, "socket_timeout": socket_timeout}
    tls: dict[str, Any] = {}
    if target.ca_file is not None:
        tls["ssl_ca_certs"] = str(target.ca_file)
    if target.sentinels:
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(target.sentinels),
            sentinel_kwargs={"socket_timeout": socket_timeout},
            **options,
        )
        master = sentinel.master_for(  # type: ignore[no-untyped-call]
            target.sentinel_master, health_check_interval=30, **options
        )
        return cast(redis.Redis, master)
    if target.cluster:
        return cast(redis.Redis, RedisCluster.from_url(target.url, **options, **tls))
    return redis.Redis.from_url(target.url, health_check_interval=30, **options, **tls)
