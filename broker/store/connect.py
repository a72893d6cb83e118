"""Which redis-py client the broker talks through: one node, a Redis Cluster or Sentinel.

This is the only module that chooses a client; every store module takes the
:class:`redis.Redis` it returns through :class:`broker.store.client.Store` and issues the
same commands whichever it is. On a cluster that works because every key that one
MULTI/EXEC, WATCH or Lua script touches shares a hash tag (docs/keyspace.md, "Running on
a Redis Cluster"), and :class:`redis.cluster.RedisCluster` routes each command by its key.
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import urlsplit

import redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException
from redis.sentinel import Sentinel

from broker.redis_target import RedisTarget
from broker.store.embedded import RedisUnavailableError

__all__ = ["connect", "describe"]


def describe(target: RedisTarget) -> str:
    """Where ``target`` points, for a message: never a password or a user name."""
    if target.sentinels:
        nodes = ",".join(f"{host}:{port}" for host, port in target.sentinels)
        return f"the Sentinel master {target.sentinel_master!r} (sentinels {nodes})"
    parts = urlsplit(target.url)
    if parts.scheme == "unix":
        return f"Redis at {parts.path}"
    kind = "the Redis Cluster node" if target.cluster else "Redis"
    try:
        return f"{kind} at {parts.hostname}:{parts.port or 6379}"
    except ValueError:  # a port that is not a number
        return f"{kind} at {parts.hostname}"


def connect(target: RedisTarget, *, socket_timeout: float) -> redis.Redis:
    """A client for ``target`` (no command is sent yet, but a cluster's slot map is read).

    A :class:`~redis.cluster.RedisCluster` is returned typed as :class:`redis.Redis`: it
    offers the same command methods, pipelines (transactions and WATCH included, on keys
    of one slot) and scripts, which is all the store modules use.

    Raises:
        RedisUnavailableError: no node of the cluster answers.
    """
    options: dict[str, Any] = {"decode_responses": False, "socket_timeout": socket_timeout}
    tls: dict[str, Any] = {}
    if target.ca_file is not None:
        tls["ssl_ca_certs"] = str(target.ca_file)
    if target.sentinels:
        if target.password:
            options["password"] = target.password
        sentinel_options: dict[str, Any] = {"socket_timeout": socket_timeout}
        if target.sentinel_password:
            sentinel_options["password"] = target.sentinel_password
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(target.sentinels), sentinel_kwargs=sentinel_options, **options
        )
        master = sentinel.master_for(  # type: ignore[no-untyped-call]
            target.sentinel_master, health_check_interval=30, **options
        )
        return cast(redis.Redis, master)
    if target.cluster:
        try:  # the client asks a node for the slot map as it is made
            cluster = RedisCluster.from_url(target.url, **options, **tls)
        except (redis.RedisError, RedisClusterException) as exc:
            raise RedisUnavailableError(
                f"{describe(target)} does not answer ({type(exc).__name__})"
            ) from None
        return cast(redis.Redis, cluster)
    return redis.Redis.from_url(target.url, health_check_interval=30, **options, **tls)
