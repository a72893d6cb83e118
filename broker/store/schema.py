"""The keyspace's schema version: recorded on a store, checked before a broker uses one.

Version 1 is the layout docs/keyspace.md describes. A store without the key holds either
nothing or data written by a broker from before the version existed, which is the same
layout: either way it is stamped with version 1. A store stamped with a *newer* version
than this broker knows was written by a newer broker: this one refuses it rather than
read or write a layout it does not understand. Migrations from older versions go in
:data:`MIGRATIONS` when a version 2 exists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from broker.errors import ConfigurationError
from broker.store import keyspace
from broker.store.client import Store

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "ensure_schema_version", "stored_schema_version"]

SCHEMA_VERSION = 1
"""The keyspace layout this broker reads and writes."""

MIGRATIONS: dict[int, Callable[[Store], None]] = {}
"""``n`` -> the function that moves a store from version ``n`` to ``n + 1`` (none yet)."""


def stored_schema_version(store: Store) -> int | None:
    """The version stamped on ``store``, or ``None`` if it carries none yet."""
    raw = cast(bytes | None, store.redis.get(keyspace.schema_version()))
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(
            f"the store's schema version {raw[:20]!r} is not a number; is this Tessera's Redis?"
        ) from None


def ensure_schema_version(store: Store) -> int:
    """Stamp a fresh (or pre-version) store with :data:`SCHEMA_VERSION`, migrate an older
    one, and refuse a newer one.

    Returns:
        The store's version, now :data:`SCHEMA_VERSION`.

    Raises:
        ConfigurationError: the store was written by a newer broker (or is not Tessera's).
    """
    store.redis.set(keyspace.schema_version(), SCHEMA_VERSION, nx=True)
    version = stored_schema_version(store)
    assert version is not None
    if version > SCHEMA_VERSION:
        raise ConfigurationError(
            f"the store holds keyspace schema version {version}, newer than this broker's "
            f"{SCHEMA_VERSION}: run the broker version that wrote it (or a later one)"
        )
    while version < SCHEMA_VERSION:
        MIGRATIONS[version](store)
        version += 1
        store.redis.set(keyspace.schema_version(), version)
    return version
