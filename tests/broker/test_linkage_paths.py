"""The clean path and the session decide alike: a differential test on a real redis-server.

Nearly every record is linked by the clean path (broker/linkage/clean_path.py), the rest
by sessions (broker/linkage/session.py); both ask the one set of rules. The same
operations are applied to two scopes, one linked with the clean path and one with
``Linker(clean_path=False)``, which decides every record the clean path would have taken
by a session of its own at the same point of the slice: persons (with their ids),
conflicts, every call's statistics and the report must come out the same, so a change
to either path alone shows here.
"""

from __future__ import annotations

import hashlib
import itertools

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.linkage import CONFLICT_KINDS, DatasetInfo, IncomingRecord, Linker, LinkStats
from broker.store.linkage_codec import CONFLICT_CODES
from broker.store.linkage_store import LinkageStore
from keys.derive import RecordRef, StoredToken

KEYS = ("k0", "k1", "k2")
DATASETS = (
    DatasetInfo("gp/a", "gp", True, KEYS),
    DatasetInfo("gp/b", "gpb", True, KEYS),
    DatasetInfo("acute/c", "acute", True, KEYS),
    DatasetInfo("community/d", "community", False, KEYS),
)
_scopes = itertools.count()


def _tok(k: int, value: int) -> StoredToken:
    return StoredToken(hashlib.sha256(f"paths/{k}:{value}".encode()).digest()[:16])


def _ref(dataset: int, local: int) -> RecordRef:
    return RecordRef(hashlib.sha256(f"paths/{dataset}/{local}".encode()).digest()[:16])


@pytest.fixture
def client(redis_server):
    conn = redis.Redis.from_url(redis_server.url)
    yield conn
    conn.close()


# A record: (dataset index, local id, token value per key or None, payload value or None).
# Small value ranges make tokens shared (clean joins, ambiguity, conflicts, merges);
# whole people (one value for every key) make clean records common.
_values = st.tuples(*(st.one_of(st.none(), st.integers(0, 5)) for _ in KEYS))
_person = st.integers(0, 5).map(lambda v: (v, v, v))
_record = st.tuples(
    st.integers(0, 3),
    st.integers(0, 7),
    st.one_of(_person, _values),
    st.one_of(st.none(), st.sampled_from(["x", "y"])),
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("link"), st.lists(_record, max_size=16)),
        st.tuples(
            st.just("retract"),
            st.lists(st.tuples(st.integers(0, 3), st.integers(0, 7)), max_size=4),
        ),
        st.tuples(st.just("replace"), st.tuples(st.integers(0, 3), st.lists(_record, max_size=8))),
    ),
    min_size=1,
    max_size=8,
)


def _incoming(d: int, local: int, values: tuple[int | None, ...], payload: str | None):
    return IncomingRecord(
        _ref(d, local),
        tuple(None if v is None else _tok(k, v) for k, v in enumerate(values)),
        () if payload is None else (payload,),
    )


def _run(linker: Linker, ops: list) -> list[LinkStats]:
    """Apply ``ops``, one call per dataset an operation touches; every call's statistics."""
    stats: list[LinkStats] = []
    for n, (kind, items) in enumerate(ops):
        if kind == "replace":
            d, records = items
            chunk = [_incoming(d, local, v, p) for _, local, v, p in records]
            stats.append(linker.link(DATASETS[d], chunk, batch_id=f"p{n}"))
            stats.append(linker.replace_finish(DATASETS[d], batch_id=f"p{n}"))
            continue
        for d, dataset in enumerate(DATASETS):
            if kind == "link":
                chunk = [_incoming(d, local, v, p) for dd, local, v, p in items if dd == d]
                if chunk:
                    stats.append(linker.link(dataset, chunk, batch_id=f"b{n}"))
            else:
                refs = [_ref(d, local) for dd, local in items if dd == d]
                if refs:
                    stats.append(linker.retract(dataset, refs, batch_id=f"r{n}"))
    return stats


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations, slice_size=st.sampled_from([1, 3, 4096]))
def test_the_clean_path_and_the_session_give_the_same_linkage(client, ops, slice_size) -> None:
    with_clean = LinkageStore(client, scope=f"paths-{next(_scopes)}")
    sessions_only = LinkageStore(client, scope=f"paths-{next(_scopes)}")
    clean_linker = Linker(with_clean, slice_size=slice_size)
    session_linker = Linker(sessions_only, slice_size=slice_size, clean_path=False)

    assert _run(clean_linker, ops) == _run(session_linker, ops)
    assert list(with_clean.iter_persons()) == list(sessions_only.iter_persons())
    assert with_clean.conflicts() == sessions_only.conflicts()
    assert clean_linker.report() == session_linker.report()


def test_a_routine_extract_links_alike_on_both_paths(client) -> None:
    """Whole people across four datasets, then a second extract of the same people."""
    ops: list = [
        ("link", [(d, p, (p, p, p), "x") for p in range(6) for d in range(4)]),
        ("link", [(d, p, (p, p if d else None, p), "y") for p in range(6) for d in range(4)]),
        ("link", [(0, 9, (1, 2, 3), None), (3, 9, (1, 2, 3), None)]),
    ]
    with_clean = LinkageStore(client, scope=f"paths-{next(_scopes)}")
    sessions_only = LinkageStore(client, scope=f"paths-{next(_scopes)}")
    assert _run(Linker(with_clean), ops) == _run(Linker(sessions_only, clean_path=False), ops)
    persons = list(with_clean.iter_persons())
    assert len(persons) == 7
    assert persons == list(sessions_only.iter_persons())


def test_stored_conflict_codes_name_the_rules_kinds() -> None:
    """Conflicts are stored by kind code; the store names them as the rules define them."""
    assert CONFLICT_CODES == CONFLICT_KINDS
