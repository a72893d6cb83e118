"""Where the broker's Redis is: a plain description, read from the settings.

It lives below both the settings and the store (which alone imports redis and turns it
into a client in :mod:`broker.store.connect`), so that neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["REDIS_SCHEMES", "RedisTarget", "parse_sentinels"]

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
        password: the master's (and its replicas') password, with Sentinel (a URL carries
            its own); never in the repr.
        sentinel_password: the sentinels' own password (their ``requirepass``).
    """

    url: str = ""
    ca_file: Path | None = None
    cluster: bool = False
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_master: str = ""
    password: str = field(default="", repr=False)
    sentinel_password: str = field(default="", repr=False)

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
