"""Which redis-py client the broker talks through: one node, a Redis Cluster or Sentinel.

This is the only module that chooses a client; every store module takes the
:class:`redis.Redis` it returns through :class:`broker.store.client.Store` and issues the
same commands whichever it is. On a cluster that works because every key that one
MULTI/EXEC, WATCH or Lua script touches shares a hash tag (docs/keyspace.md, "Running on
a Redis Cluster"), and :class:`redis.cluster.RedisCluster` routes each command by its key.
"""

from __future__ import annotations

from typing import Any, cast

import redis
from redis.cluster import RedisCluster
from redis.sentinel import Sentinel

from broker.redis_target import RedisTarget

__all__ = ["connect"]


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
