"""Properties of the linkage engine, over random batches on a real redis-server."""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from collections.abc import Callable

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.linkage import DatasetInfo, IncomingRecord, Linker
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
SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _tok(k: int, value: int) -> StoredToken:
    return StoredToken(hashlib.sha256(f"{k}:{value}".encode()).digest()[:16])


def _ref(dataset: int, local: int) -> RecordRef:
    return RecordRef(hashlib.sha256(f"{dataset}/{local}".encode()).digest()[:16])


@pytest.fixture
def client(redis_server):
    conn = redis.Redis.from_url(redis_server.url)
    yield conn
    conn.close()


def _fresh(client: redis.Redis, slice_size: int = 4096) -> tuple[LinkageStore, Linker]:
    store = LinkageStore(client, scope=f"prop-{next(_scopes)}")
    return store, Linker(store, slice_size=slice_size)


def _partition(store: LinkageStore) -> set[frozenset[tuple[str, bytes]]]:
    return {
        frozenset((r.dataset, bytes(r.ref)) for r in records) for _, records in store.iter_persons()
    }


# A record: (dataset index, local id, token values per key or None)
records_strategy = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.integers(0, 5),
        st.tuples(*(st.one_of(st.none(), st.integers(0, 4)) for _ in KEYS)),
    ),
    max_size=14,
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("link"), records_strategy),
        st.tuples(
            st.just("retract"),
            st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5)), max_size=4),
        ),
    ),
    min_size=1,
    max_size=6,
)


def _check_invariants(store: LinkageStore, linker: Linker, model: dict) -> None:
    persons = list(store.iter_persons())
    seen: set[tuple[str, bytes]] = set()
    for pid, records in persons:
        assert records, "no empty persons"
        counts = Counter(r.dataset for r in records)
        for dataset in DATASETS:
            if dataset.one_record_per_person:
                assert counts[dataset.id] <= 1, "twin guard"
        for r in records:
            key = (r.dataset, bytes(r.ref))
            assert key not in seen, "a record is in one person only"
            seen.add(key)
            assert linker.person_of(r.dataset, r.ref) == pid
    held = {(DATASETS[d].id, bytes(_ref(d, local))) for d, local in model}
    assert seen == held
    report = linker.report()
    assert report.records == len(model)
    assert report.persons == len(persons)
    assert report.linked_persons == sum(
        1 for _, records in persons if len({r.dataset for r in records}) > 1
    )
    by_dataset = Counter(DATASETS[d].id for d, _ in model)
    assert {d.id: d.records for d in report.datasets if d.records} == dict(by_dataset)
    ambiguous = 0
    for d, dataset in enumerate(DATASETS):
        if not dataset.one_record_per_person:
            continue
        holders = Counter(
            (k, value)
            for (dd, _), values in model.items()
            if dd == d
            for k, value in enumerate(values)
            if value is not None
        )
        ambiguous += sum(1 for n in holders.values() if n > 1)
    assert report.ambiguous_tokens == ambiguous
    assert sum(report.links_by_key.values()) + report.persons == report.records


def _apply(
    linker_for: Callable[[], Linker],
    n: int,
    kind: str,
    items: list,
    model: dict[tuple[int, int], tuple[int | None, ...]],
) -> None:
    """Apply one operation per dataset it touches; ``linker_for`` gives each call's linker."""
    for d in range(len(DATASETS)):
        if kind == "link":
            chunk = [
                IncomingRecord(
                    _ref(d, local),
                    tuple(None if v is None else _tok(k, v) for k, v in enumerate(values)),
                    (),
                )
                for dd, local, values in items
                if dd == d
            ]
            if chunk:
                linker_for().link(DATASETS[d], chunk, batch_id=f"b{n}")
            model.update({(d, local): values for dd, local, values in items if dd == d})
        else:
            refs = [_ref(d, local) for dd, local in items if dd == d]
            if refs:
                linker_for().retract(DATASETS[d], refs, batch_id=f"r{n}")
            for dd, local in items:
                if dd == d:
                    model.pop((d, local), None)


@SETTINGS
@given(ops=operations, slice_size=st.integers(1, 4))
def test_invariants_hold_after_any_operations(client, ops, slice_size) -> None:
    store, linker = _fresh(client, slice_size)
    model: dict[tuple[int, int], tuple[int | None, ...]] = {}
    for n, (kind, items) in enumerate(ops):
        _apply(lambda: linker, n, kind, items, model)
        _check_invariants(store, linker, model)


@SETTINGS
@given(ops=operations)
def test_a_worker_reading_the_scope_afresh_decides_as_one_kept_in_step(client, ops) -> None:
    """The linking worker keeps the scope in memory; a new worker reads it from Redis.

    One scope is linked by a single long-lived linker, the other by a new store and
    linker for every call (as after a restart, or when another broker linked last):
    persons, conflicts and the report must come out the same.
    """
    kept, linker = _fresh(client)
    fresh_scope = f"prop-{next(_scopes)}"

    def fresh_linker() -> Linker:
        return Linker(LinkageStore(client, scope=fresh_scope))

    model_kept: dict[tuple[int, int], tuple[int | None, ...]] = {}
    model_fresh: dict[tuple[int, int], tuple[int | None, ...]] = {}
    for n, (kind, items) in enumerate(ops):
        _apply(lambda: linker, n, kind, items, model_kept)
        _apply(fresh_linker, n, kind, items, model_fresh)
    fresh = LinkageStore(client, scope=fresh_scope)
    assert list(fresh.iter_persons()) == list(kept.iter_persons())
    assert fresh.conflicts() == kept.conflicts()
    assert fresh_linker().report() == linker.report()


# Entities whose records all carry the entity's own key-0 token: no conflicts possible.
entities = st.lists(
    st.lists(st.integers(0, 3), min_size=1, max_size=4, unique=True),
    min_size=1,
    max_size=8,
)


@SETTINGS
@given(
    groups=entities,
    order=st.randoms(use_true_random=False),
    chunk=st.integers(1, 5),
    slice_size=st.integers(1, 3),
)
def test_partition_is_the_truth_whatever_the_order(
    client, groups, order, chunk, slice_size
) -> None:
    records: list[tuple[int, IncomingRecord]] = []
    truth: set[frozenset[tuple[str, bytes]]] = set()
    for e, datasets in enumerate(groups):
        members = set()
        for d in datasets:
            values = (e, e if (e + d) % 2 else None, e if d != 3 else None)
            rec = IncomingRecord(
                _ref(d, e),
                tuple(None if v is None else _tok(k, v) for k, v in enumerate(values)),
                (),
            )
            records.append((d, rec))
            members.add((DATASETS[d].id, bytes(rec.ref)))
        truth.add(frozenset(members))
    order.shuffle(records)
    store, linker = _fresh(client, slice_size)
    for start in range(0, len(records), chunk):
        part = records[start : start + chunk]
        for d, dataset in enumerate(DATASETS):
            mine = [rec for dd, rec in part if dd == d]
            if mine:
                linker.link(dataset, mine, batch_id=f"b{start}")
    assert _partition(store) == truth
    assert linker.report().conflicting_records == 0


@SETTINGS
@given(items=records_strategy, order=st.randoms(use_true_random=False))
def test_without_conflicts_order_does_not_matter(client, items, order) -> None:
    latest = {(d, local): values for d, local, values in items}
    recs = [
        (
            d,
            IncomingRecord(
                _ref(d, local),
                tuple(None if v is None else _tok(k, v) for k, v in enumerate(values)),
                (),
            ),
        )
        for (d, local), values in latest.items()
    ]
    results = []
    for attempt in range(2):
        if attempt:
            order.shuffle(recs)
        store, linker = _fresh(client)
        for d, rec in recs:
            linker.link(DATASETS[d], [rec], batch_id="b")
        report = linker.report()
        results.append((_partition(store), report.conflicting_records, report.ambiguous_tokens))
    (first, c1, a1), (second, c2, a2) = results
    assert a1 == a2
    if c1 == 0 and c2 == 0:
        assert first == second
