"""References are kept whole: two that share all but their last bytes are two records."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
import redis

from broker.linkage import DatasetInfo, IncomingRecord, Linker
from broker.store.linkage_store import LinkageStore
from keys.derive import RecordRef, StoredToken

KEYS = ("nhs_dob", "name_dob")


@pytest.fixture
def linker(redis_server) -> Iterator[Linker]:
    client = redis.Redis.from_url(redis_server.url)
    yield Linker(LinkageStore(client, scope="refs-whole"))
    client.close()


def test_references_sharing_a_long_prefix_stay_distinct(linker: Linker) -> None:
    dataset = DatasetInfo("o/refs", "o", True, KEYS)
    refs = [RecordRef(b"\x07" * 15 + bytes((i,))) for i in range(40)]
    records = [
        IncomingRecord(
            ref,
            tuple(StoredToken(hashlib.sha256(f"{k}:{i}".encode()).digest()[:16]) for k in KEYS),
            (),
        )
        for i, ref in enumerate(refs)
    ]
    stats = linker.link(dataset, records, batch_id="b1")
    assert stats.added == 40
    again = linker.link(dataset, records[:5], batch_id="b2")
    assert (again.added, again.unchanged) == (0, 5)
    persons = {linker.person_of(dataset.id, ref) for ref in refs}
    assert None not in persons
    assert len(persons) == 40
    assert linker.report().records == 40
