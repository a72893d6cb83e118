"""The broker's documented limits (docs/api.md, Limits): credential lockout and quotas, in Redis.

Bearer-credential failures are counted in Redis per client address and per presented
credential (by its keyed digest, never the credential), in fixed windows of
``auth_failure_window_seconds``; at the limit the address or credential is refused with
429 until its window ends, before its credential is looked up. Organisation quotas cap
what one organisation can make the broker hold: open batches, datasets and domains.
Counters live in Redis so that every broker process sharing it sees the same counts.
"""

from __future__ import annotations

import time
from typing import cast

from broker.config import BrokerSettings
from broker.errors import QuotaExceededError, RateLimitedError
from broker.store import keyspace
from broker.store.batches import get_batch
from broker.store.client import Store
from broker.store.datasets import list_datasets
from keys.wire import BatchState, DatasetDeclaration

__all__ = [
    "check_dataset_quota",
    "check_lockout",
    "check_open_batch_quota",
    "note_open_batch",
    "record_auth_failure",
]


def _counter_keys(address: str, digest: str | None) -> list[str]:
    keys = [keyspace.auth_failures_address(address)]
    if digest is not None:
        keys.append(keyspace.auth_failures_credential(digest))
    return keys


def check_lockout(
    store: Store, settings: BrokerSettings, *, address: str, digest: str | None
) -> None:
    """Refuse an address or credential that reached its failure limit in this window.

    Raises:
        RateLimitedError: locked out, with the seconds until the window ends.
    """
    keys = _counter_keys(address, digest)
    limits = [settings.max_auth_failures_per_address, settings.max_auth_failures_per_credential]
    with store.redis.pipeline(transaction=False) as pipe:  # two slots on a cluster: no MGET
        for key in keys:
            pipe.get(key)
        counts = cast(list[bytes | None], pipe.execute())
    for key, count, limit in zip(keys, counts, limits, strict=False):
        if count is not None and int(count) >= limit:
            ttl = int(store.redis.ttl(key))
            raise RateLimitedError(max(ttl, 1))


def record_auth_failure(
    store: Store, settings: BrokerSettings, *, address: str, digest: str | None
) -> None:
    """Count one failed credential against its address and (if given) its digest."""
    window = settings.auth_failure_window_seconds
    with store.redis.pipeline(transaction=False) as pipe:
        for key in _counter_keys(address, digest):
            pipe.set(key, 0, ex=window, nx=True)  # starts the window; INCR keeps its TTL
            pipe.incr(key)
        pipe.execute()


def check_open_batch_quota(
    store: Store, settings: BrokerSettings, *, org: str, batch_key: str
) -> None:
    """Refuse a new batch while the organisation holds its limit of open batches.

    Re-opening a batch already open (to resume) is always allowed. Batches that were
    committed or expired since they were opened are dropped from the count first.

    Raises:
        QuotaExceededError: at the limit.
    """
    key = keyspace.org_open_batches(org)
    store.redis.zremrangebyscore(key, "-inf", time.time())
    members = [m.decode() for m in cast(list[bytes], store.redis.zrange(key, 0, -1))]
    if batch_key in members:
        return
    for member in members:
        record = get_batch(store, member)
        if record is None or record.state is not BatchState.RECEIVING:
            store.redis.zrem(key, member)
            members.remove(member)
    if len(members) >= settings.max_open_batches_per_org:
        raise QuotaExceededError(
            f"an organisation may hold {settings.max_open_batches_per_org} batches open at "
            "once; commit or finish the open ones first"
        )


def note_open_batch(store: Store, settings: BrokerSettings, *, org: str, batch_key: str) -> None:
    """Count a batch as open until it is committed or expires."""
    expires = time.time() + settings.receiving_ttl_seconds
    store.redis.zadd(keyspace.org_open_batches(org), {batch_key: expires}, nx=True)


def check_dataset_quota(
    store: Store, settings: BrokerSettings, *, org: str, declaration: DatasetDeclaration
) -> None:
    """Refuse a new dataset over the organisation's dataset or domain limit.

    Re-declaring an existing dataset is left to the declaration itself (200 or 409).

    Raises:
        QuotaExceededError: a new dataset over either limit.
    """
    held = list_datasets(store, org=org)
    if any(d.name == declaration.name for d in held):
        return
    if len(held) >= settings.max_datasets_per_org:
        raise QuotaExceededError(
            f"an organisation may declare at most {settings.max_datasets_per_org} datasets"
        )
    domains = {d.domain for d in held}
    if declaration.domain not in domains and len(domains) >= settings.max_domains_per_org:
        raise QuotaExceededError(
            f"an organisation's datasets may use at most {settings.max_domains_per_org} "
            "linkage domains"
        )
