"""Readers see a batch whole or not at all: releases and reports never show half a batch.

The linker applies a batch slice by slice (50,000 records a slice), each slice one atomic
script that moves the scope's write generation on. Between the first and the last slice
the linkage holds part of the batch, so a reader must not look then. A batch is marked
``linking`` before its first slice and ``linked`` only after its last, so a read is whole
when, with the generation read before it and unchanged after it, no batch of its domain
was ``linking`` when it began: nothing was written while it read, and what it read held
no batch in part.

A key rotation's switch (:mod:`broker.rotation`) changes which linkage scope holds the
domain: a read counts only if the domain's active scope was the same before and after it.

Releases (:mod:`broker.release`) wait for that, a few seconds at most, then answer 503
``linkage_busy`` (the SDK retries it); the linkage report (:mod:`broker.linkage_report`)
never waits: while a batch links it shows the report kept when the domain's last batch
was whole.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar, cast

from broker.errors import LinkageBusyError
from broker.store import batches as batch_store
from broker.store.client import Store
from broker.store.datasets import get_dataset
from broker.store.rotation_store import active_scope

__all__ = ["RELEASE_WAIT_SECONDS", "read_whole", "read_whole_once"]

RELEASE_WAIT_SECONDS = 20.0
"""How long a release waits for a batch of its domain to finish linking before a 503."""

_POLL_SECONDS = 0.1

T = TypeVar("T")


def _linking_in(store: Store, domain: str) -> bool:
    for ds_id in batch_store.linking_dataset_ids(store):
        org, _, name = ds_id.partition("/")
        if get_dataset(store, org=org, name=name).domain == domain:
            return True
    return False


def read_whole_once(store: Store, domain: str, read: Callable[[], T]) -> tuple[bool, T | None]:
    """Run ``read`` once; ``(True, result)`` if it saw every batch of ``domain`` whole."""
    scope = active_scope(store, domain)
    before = batch_store.linkage_generation(store, scope)
    if _linking_in(store, domain):
        return False, None
    result = read()
    if active_scope(store, domain) != scope:
        return False, None
    if batch_store.linkage_generation(store, scope) != before:
        return False, None
    return True, result


def read_whole(
    store: Store,
    domain: str,
    read: Callable[[], T],
    *,
    wait: float = RELEASE_WAIT_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``read`` until it sees every batch of ``domain`` whole, for ``wait`` seconds.

    ``read`` must have no side effects (it may run several times).

    Raises:
        LinkageBusyError: a batch of the domain was still linking after ``wait`` seconds.
    """
    deadline = time.monotonic() + wait
    while True:
        whole, result = read_whole_once(store, domain, read)
        if whole:
            return cast(T, result)
        if time.monotonic() >= deadline:
            raise LinkageBusyError(
                "a batch of this linkage domain is being linked; try again in a few seconds"
            )
        sleep(_POLL_SECONDS)
