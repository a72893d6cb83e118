"""What a key rotation's switch costs: carrying person ids over, and deleting the old linkage.

Two datasets of ``n`` records each (half of them the same people) are linked under v1,
then again under v2 in the other order, so every person is numbered differently and the
switch must renumber all of them (the worst case), against a private redis-server:

* ``carry_cpu_s``: CPU seconds of the broker process to carry every person id over
  (both scopes read, the ids chosen, the new scope rewritten in one atomic write);
* ``carry_redis_cpu_s``: CPU seconds Redis spent meanwhile (``INFO cpu``);
* ``delete_cpu_s`` / ``delete_redis_cpu_s``: the same for deleting the v1 linkage;
* ``persons``: persons carried over.

CPU time, not wall clock: the machine may be shared.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path
from typing import cast

from broker.linkage import DatasetInfo, IncomingRecord, Linker
from broker.rotation import carry_person_ids
from broker.store.client import Store
from broker.store.embedded import EmbeddedRedis
from broker.store.linkage_store import LinkageStore
from broker.store.rotation_store import Rotation, RotationState, delete_scope
from keys.derive import RecordRef, StoredToken

__all__ = ["run"]

_KEYS = ("nhs", "name_dob")


def _records(n: int, *, dataset: int, version: str) -> list[IncomingRecord]:
    refs = random.Random(f"refs-{dataset}")
    people = random.Random(f"people-{version}")
    shared = [StoredToken(people.randbytes(16)) for _ in range(n // 2)]
    own = random.Random(f"own-{dataset}-{version}")
    out = []
    for i in range(n):
        first = shared[i] if i < len(shared) else StoredToken(own.randbytes(16))
        out.append(
            IncomingRecord(
                RecordRef(refs.randbytes(16)), (first, StoredToken(own.randbytes(16))), ()
            )
        )
    return out


def _link(store: Store, scope: str, n: int, version: str, order: list[int]) -> None:
    linker = Linker(LinkageStore(store.redis, scope=scope))
    for dataset in order:
        info = DatasetInfo(f"org{dataset}/ds", f"org{dataset}", True, _KEYS)
        records = _records(n, dataset=dataset, version=version)
        for start in range(0, n, 50_000):
            linker.link(info, records[start : start + 50_000], batch_id=f"{version}-{dataset}")


def _redis_cpu(store: Store) -> float:
    info = cast(dict[str, float], store.redis.info("cpu"))
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def run(n: int) -> dict[str, float]:
    """Link ``n`` records in each of two datasets twice, then carry over and delete."""
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp))
        server.start()
        try:
            with Store(server.url) as store:
                _link(store, "bench", n, "v1", [1, 2])
                _link(store, "bench@v2", n, "v2", [2, 1])
                rotation = Rotation(
                    "bench", "v1", "v2", RotationState.SWITCHING, "bench@v2", "bench", "", {}, ""
                )
                old = LinkageStore(store.redis, scope="bench")
                token = old.acquire()
                redis_before, cpu_before = _redis_cpu(store), time.process_time()
                try:
                    result = carry_person_ids(store, rotation, old=old)
                finally:
                    old.release(token)
                carry_cpu = time.process_time() - cpu_before
                carry_redis = _redis_cpu(store) - redis_before
                redis_before, cpu_before = _redis_cpu(store), time.process_time()
                delete_scope(store, "bench")
                delete_cpu = time.process_time() - cpu_before
                delete_redis = _redis_cpu(store) - redis_before
        finally:
            server.stop()
    return {
        "persons": float(result.persons),
        "carry_cpu_s": carry_cpu,
        "carry_redis_cpu_s": carry_redis,
        "delete_cpu_s": delete_cpu,
        "delete_redis_cpu_s": delete_redis,
    }
