"""The incremental linkage engine against a real redis-server."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator

import pytest
import redis

from broker.errors import LinkageBusyError
from broker.linkage import DatasetInfo, IncomingRecord, Linker
from broker.store import keyspace
from broker.store.linkage_store import (
    LinkageStore,
    PersonId,
    WriteSet,
    next_id,
)
from keys.derive import RecordRef, StoredToken

KEYS = ("nhs_dob", "name_dob_postcode", "name_dob", "initial_dob_sector")
_scopes = itertools.count()


def tok(value: str) -> StoredToken:
    return StoredToken(hashlib.sha256(value.encode()).digest()[:16])


def ref(dataset: str, local: str) -> RecordRef:
    return RecordRef(hashlib.sha256(f"ref/{dataset}/{local}".encode()).digest()[:16])


def record(
    dataset: str, local: str, *tokens: str | None, payload: tuple[str | None, ...] = ()
) -> IncomingRecord:
    padded = list(tokens) + [None] * (len(KEYS) - len(tokens))
    return IncomingRecord(
        ref(dataset, local),
        tuple(None if t is None else tok(f"{k}:{t}") for k, t in enumerate(padded)),
        payload,
    )


def ds(name: str, *, opp: bool = True) -> DatasetInfo:
    return DatasetInfo(id=f"{name}/data", org=name, one_record_per_person=opp, key_names=KEYS)


@pytest.fixture
def client(redis_server) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_server.url)
    yield conn
    conn.close()


@pytest.fixture
def store(client) -> LinkageStore:
    store = LinkageStore(client, scope=f"test-{next(_scopes)}")
    store.tune_server()
    return store


@pytest.fixture
def linker(store) -> Linker:
    return Linker(store)


def person(linker: Linker, dataset: DatasetInfo, local: str) -> PersonId | None:
    return linker.person_of(dataset.id, ref(dataset.id, local))


def partition(store: LinkageStore) -> set[frozenset[tuple[str, bytes]]]:
    return {
        frozenset((r.dataset, bytes(r.ref)) for r in records) for _, records in store.iter_persons()
    }


GP, ACUTE, COMMUNITY, GP2 = ds("gp"), ds("acute"), ds("community", opp=False), ds("gp2")


def test_two_datasets_link_with_ground_truth(linker: Linker, store: LinkageStore) -> None:
    # 30 people; the GP holds all; the hospital holds 20 of them (some without an NHS
    # number, some with a different postcode) and 5 people the GP does not know.
    gp = [record(GP.id, f"g{i}", f"n{i}", f"p{i}", f"d{i}", f"s{i}") for i in range(30)]
    acute = []
    for i in range(20):
        nhs = None if i % 4 == 0 else f"n{i}"
        postcode = f"moved{i}" if i % 5 == 0 else f"p{i}"
        acute.append(record(ACUTE.id, f"a{i}", nhs, postcode, f"d{i}", f"s{i}"))
    acute += [record(ACUTE.id, f"x{i}", f"nx{i}", f"px{i}", f"dx{i}") for i in range(5)]
    linker.link(GP, gp, batch_id="gp-1")
    stats = linker.link(ACUTE, acute, batch_id="acute-1")
    assert stats.added == 25
    truth = {(f"g{i}", f"a{i}") for i in range(20)}
    found = set()
    for i in range(30):
        for a in [f"a{j}" for j in range(20)] + [f"x{j}" for j in range(5)]:
            if person(linker, GP, f"g{i}") == person(linker, ACUTE, a):
                found.add((f"g{i}", a))
    assert found == truth  # precision and recall both 1 on this data
    report = linker.report()
    assert report.records == 55
    assert report.persons == 35
    assert report.linked_persons == 20
    assert report.links_by_dataset_pair == {"acute/data|gp/data": 20}
    assert report.links_by_key == {"nhs_dob": 15, "name_dob_postcode": 4, "name_dob": 1}
    assert {d.id: d.linked_records for d in report.datasets} == {
        "acute/data": 20,
        "gp/data": 20,
    }


def test_three_and_more_datasets_form_persons(linker: Linker, store: LinkageStore) -> None:
    linker.link(GP, [record(GP.id, "g1", "n1", "p1", "d1")], batch_id="b1")
    linker.link(GP2, [record(GP2.id, "h1", "n2", "p2", "d2")], batch_id="b2")
    linker.link(
        ACUTE,
        [record(ACUTE.id, "a1", "n1", None, "d1"), record(ACUTE.id, "a2", None, "p2", "d2")],
        batch_id="b3",
    )
    # The community trust holds many records per person, some with only a weak key.
    linker.link(
        COMMUNITY,
        [
            record(COMMUNITY.id, "c1", "n1"),
            record(COMMUNITY.id, "c2", None, None, "d1"),
            record(COMMUNITY.id, "c3", None, "p2"),
            record(COMMUNITY.id, "c4", "n9"),
        ],
        batch_id="b4",
    )
    expected = {
        frozenset({(GP.id, "g1"), (ACUTE.id, "a1"), (COMMUNITY.id, "c1"), (COMMUNITY.id, "c2")}),
        frozenset({(GP2.id, "h1"), (ACUTE.id, "a2"), (COMMUNITY.id, "c3")}),
        frozenset({(COMMUNITY.id, "c4")}),
    }
    assert partition(store) == {
        frozenset((d, bytes(ref(d, local))) for d, local in group) for group in expected
    }
    assert linker.report().links_by_dataset_pair["community/data|gp/data"] == 1


def test_ambiguous_token_is_not_used_for_its_dataset(linker: Linker, store: LinkageStore) -> None:
    # Twins: same name, date of birth and postcode at the GP, different NHS numbers.
    linker.link(
        GP,
        [record(GP.id, "t1", "n1", "twins", "td"), record(GP.id, "t2", "n2", "twins", "td")],
        batch_id="b1",
    )
    assert person(linker, GP, "t1") != person(linker, GP, "t2")
    linker.link(ACUTE, [record(ACUTE.id, "a", None, "twins", "td")], batch_id="b2")
    assert person(linker, ACUTE, "a") not in {person(linker, GP, "t1"), person(linker, GP, "t2")}
    report = linker.report()
    assert report.ambiguous_tokens == 2
    assert {d.id: d.ambiguous_tokens for d in report.datasets}["gp/data"] == 2
    # With the NHS number the hospital record links to the right twin.
    linker.link(ACUTE, [record(ACUTE.id, "b", "n2", "twins", "td")], batch_id="b3")
    assert person(linker, ACUTE, "b") == person(linker, GP, "t2")


def test_token_turning_ambiguous_unlinks_what_it_linked(linker: Linker) -> None:
    linker.link(GP, [record(GP.id, "g1", None, "p", "d")], batch_id="b1")
    linker.link(ACUTE, [record(ACUTE.id, "a", None, "p", "d")], batch_id="b2")
    assert person(linker, ACUTE, "a") == person(linker, GP, "g1")
    first = person(linker, GP, "g1")
    stats = linker.link(GP, [record(GP.id, "g2", None, "p", "d")], batch_id="b3")
    assert stats.persons_dissolved == 1
    assert person(linker, ACUTE, "a") not in {person(linker, GP, "g1"), person(linker, GP, "g2")}
    assert person(linker, GP, "g1") == first  # the oldest record keeps the person id


def test_conflict_between_keys_is_recorded_not_chained(linker: Linker, store: LinkageStore) -> None:
    linker.link(GP, [record(GP.id, "g1", "n1", "p1", "d1")], batch_id="b1")
    linker.link(GP2, [record(GP2.id, "h1", "n2", None, "dX")], batch_id="b2")
    # The hospital record's NHS key says g1, its weaker name/dob key says h1.
    stats = linker.link(ACUTE, [record(ACUTE.id, "a", "n1", None, "dX")], batch_id="b3")
    assert stats.conflicts == 1
    assert person(linker, ACUTE, "a") == person(linker, GP, "g1")
    assert person(linker, GP2, "h1") != person(linker, GP, "g1")
    report = linker.report()
    assert report.conflicting_records == 1
    assert report.conflicts_by_kind["key"] == 1
    [entry] = store.conflicts()
    assert (entry.kind, entry.strong_key, entry.weak_key) == ("key", 0, 2)
    assert entry.record.ref == ref(ACUTE.id, "a")
    assert entry.other.ref == ref(GP2.id, "h1")


def test_twin_guard(linker: Linker) -> None:
    linker.link(GP, [record(GP.id, "g1", None, "p", "d1")], batch_id="b1")
    linker.link(ACUTE, [record(ACUTE.id, "a", "n", "p", "d1")], batch_id="b2")
    stats = linker.link(GP, [record(GP.id, "g2", "n", None, "d2")], batch_id="b3")
    assert stats.twin_guard_blocks == 1
    assert person(linker, GP, "g2") != person(linker, GP, "g1")
    report = linker.report()
    assert report.conflicts_by_kind["twin"] == 1


def test_merge_keeps_the_older_id(linker: Linker) -> None:
    linker.link(GP, [record(GP.id, "g", "n", None, None, "s")], batch_id="b1")
    linker.link(COMMUNITY, [record(COMMUNITY.id, "c", "n")], batch_id="b2")
    older = person(linker, GP, "g")
    assert person(linker, COMMUNITY, "c") == older
    linker.link(GP2, [record(GP2.id, "h", None, "pp", "dd")], batch_id="b3")
    linker.link(ACUTE, [record(ACUTE.id, "x", None, "pp", "dd")], batch_id="b4")
    newer = person(linker, GP2, "h")
    assert older is not None and newer is not None and older < newer
    # A record whose strongest key reaches both persons merges them into the older.
    stats = linker.link(COMMUNITY, [record(COMMUNITY.id, "c2", "n", "pp", "dd")], batch_id="b5")
    assert stats.persons_merged == 0  # NHS key reaches only the older person
    stats = linker.link(
        COMMUNITY, [record(COMMUNITY.id, "c3", None, None, None, "s")], batch_id="b6"
    )
    assert person(linker, COMMUNITY, "c3") == older
    linker.link(COMMUNITY, [record(COMMUNITY.id, "c4", None, "pp", None)], batch_id="b7")
    assert person(linker, COMMUNITY, "c4") in {older, newer}


def test_strongest_key_wins_over_weaker_persons(linker: Linker) -> None:
    linker.link(GP, [record(GP.id, "g", None, None, "d")], batch_id="b1")
    linker.link(ACUTE, [record(ACUTE.id, "a", "n2", None, None)], batch_id="b2")
    older, newer = person(linker, GP, "g"), person(linker, ACUTE, "a")
    assert older is not None and newer is not None and older < newer
    # The community record shares its weakest present key with both... at one strength:
    linker.link(COMMUNITY, [record(COMMUNITY.id, "c", "n2", None, "d")], batch_id="b3")
    # NHS key (strongest) reaches the acute person; the name key is a conflict.
    assert person(linker, COMMUNITY, "c") == newer
    # Two records sharing one token at the strongest key merge the persons they reach.
    linker.link(GP2, [record(GP2.id, "h", None, None, "e")], batch_id="b4")
    linker.link(ACUTE, [record(ACUTE.id, "b", None, None, "e")], batch_id="b5")
    p1 = person(linker, GP2, "h")
    linker.link(GP, [record(GP.id, "k", None, None, "f")], batch_id="b6")
    p2 = person(linker, GP, "k")
    stats = linker.link(COMMUNITY, [record(COMMUNITY.id, "m", None, None, None)], batch_id="b7")
    assert stats.persons_merged == 0
    assert p1 != p2


def test_same_strength_merge_keeps_older(linker: Linker) -> None:
    linker.link(GP, [record(GP.id, "g1", "n1")], batch_id="b1")
    linker.link(COMMUNITY, [record(COMMUNITY.id, "c1", "n1", None, "t")], batch_id="b2")
    linker.link(GP2, [record(GP2.id, "h", "n2")], batch_id="b3")
    stats = linker.link(ACUTE, [record(ACUTE.id, "x", "n2", None, "t")], batch_id="b4")
    assert stats.conflicts == 1  # NHS key says h's person, name key says g1's
    older, newer = person(linker, GP, "g1"), person(linker, GP2, "h")
    assert older is not None and newer is not None and older < newer
    # A record whose strongest key is that name key reaches both persons, which hold no
    # two records of one dataset: they merge, into the older id.
    gp3 = ds("gp3")
    stats = linker.link(gp3, [record(gp3.id, "r", None, None, "t")], batch_id="b5")
    assert stats.persons_merged == 1
    assert {
        person(linker, GP, "g1"),
        person(linker, COMMUNITY, "c1"),
        person(linker, GP2, "h"),
        person(linker, ACUTE, "x"),
        person(linker, gp3, "r"),
    } == {older}
    assert linker.report().persons == 1


def test_same_strength_persons_that_cannot_merge(linker: Linker) -> None:
    linker.link(GP, [record(GP.id, "g1", "n1")], batch_id="b1")
    linker.link(COMMUNITY, [record(COMMUNITY.id, "c1", "n1", None, "t")], batch_id="b2")
    linker.link(GP, [record(GP.id, "g2", "n2")], batch_id="b3")
    linker.link(ACUTE, [record(ACUTE.id, "x", "n2", None, "t")], batch_id="b4")
    stats = linker.link(GP2, [record(GP2.id, "r", None, None, "t")], batch_id="b5")
    # Both persons hold a GP record: no merge; the record joins the older, conflict kept.
    assert stats.persons_merged == 0
    assert person(linker, GP2, "r") == person(linker, GP, "g1")
    assert linker.report().conflicts_by_kind["merge"] == 1


def test_retract_relinks_only_what_it_touches(linker: Linker, store: LinkageStore) -> None:
    linker.link(
        GP,
        [record(GP.id, f"g{i}", f"n{i}", f"p{i}", f"d{i}") for i in range(5)],
        batch_id="b1",
    )
    linker.link(
        ACUTE,
        [record(ACUTE.id, f"a{i}", f"n{i}", f"p{i}", f"d{i}") for i in range(5)],
        batch_id="b2",
    )
    linker.link(COMMUNITY, [record(COMMUNITY.id, "c0", None, None, "d0")], batch_id="b3")
    before = {i: person(linker, GP, f"g{i}") for i in range(5)}
    stats = linker.retract(GP, [ref(GP.id, "g0"), ref(GP.id, "nobody")], batch_id="r1")
    assert stats.retracted == 1
    assert stats.persons_dissolved == 1
    assert stats.relinked == 2
    assert person(linker, GP, "g0") is None
    # The rest of g0's person stays together and keeps its id.
    assert person(linker, ACUTE, "a0") == person(linker, COMMUNITY, "c0") == before[0]
    assert {i: person(linker, GP, f"g{i}") for i in range(1, 5)} == {
        i: before[i] for i in range(1, 5)
    }
    assert linker.report().records == 10
    # Retracting again does nothing.
    again = linker.retract(GP, [ref(GP.id, "g0")], batch_id="r1")
    assert again.retracted == 0


def test_retract_the_bridge_splits_the_person(linker: Linker) -> None:
    linker.link(GP, [record(GP.id, "g", "n", None, None)], batch_id="b1")
    linker.link(ACUTE, [record(ACUTE.id, "a", "n", None, "d")], batch_id="b2")
    linker.link(COMMUNITY, [record(COMMUNITY.id, "c", None, None, "d")], batch_id="b3")
    assert person(linker, GP, "g") == person(linker, COMMUNITY, "c")
    linker.retract(ACUTE, [ref(ACUTE.id, "a")], batch_id="r1")
    assert person(linker, GP, "g") != person(linker, COMMUNITY, "c")
    report = linker.report()
    assert report.persons == 2 and report.linked_persons == 0


def test_retract_lifts_ambiguity(linker: Linker) -> None:
    linker.link(
        GP,
        [record(GP.id, "t1", None, "twins"), record(GP.id, "t2", None, "twins")],
        batch_id="b1",
    )
    linker.link(ACUTE, [record(ACUTE.id, "a", None, "twins")], batch_id="b2")
    assert linker.report().ambiguous_tokens == 1
    linker.retract(GP, [ref(GP.id, "t2")], batch_id="r1")
    assert linker.report().ambiguous_tokens == 0
    assert person(linker, ACUTE, "a") == person(linker, GP, "t1")


def test_changed_record_is_relinked(linker: Linker) -> None:
    linker.link(GP, [record(GP.id, "g1", "n1"), record(GP.id, "g2", "n2")], batch_id="b1")
    linker.link(ACUTE, [record(ACUTE.id, "a", "n1", payload=("x",))], batch_id="b2")
    assert person(linker, ACUTE, "a") == person(linker, GP, "g1")
    stats = linker.link(ACUTE, [record(ACUTE.id, "a", "n2", payload=("y",))], batch_id="b3")
    assert stats.changed == 1 and stats.added == 0
    assert person(linker, ACUTE, "a") == person(linker, GP, "g2")
    pid = person(linker, ACUTE, "a")
    assert pid is not None
    assert {(r.dataset, r.payload) for r in linker.records_of_person(pid)} == {
        (GP.id, ()),
        (ACUTE.id, ("y",)),
    }
    assert linker.report().persons == 2


def test_replace_retracts_what_the_snapshot_lacks(linker: Linker) -> None:
    linker.link(GP, [record(GP.id, f"g{i}", f"n{i}") for i in range(6)], batch_id="gp-1")
    linker.link(ACUTE, [record(ACUTE.id, f"a{i}", f"n{i}") for i in range(6)], batch_id="a-1")
    # The new snapshot drops g0 and g1 and changes g2, in two chunks.
    linker.link(GP, [record(GP.id, "g2", "n2x"), record(GP.id, "g3", "n3")], batch_id="gp-2")
    linker.link(GP, [record(GP.id, "g4", "n4"), record(GP.id, "g5", "n5")], batch_id="gp-2")
    stats = linker.replace_finish(GP, batch_id="gp-2")
    assert stats.retracted == 2
    assert person(linker, GP, "g0") is None and person(linker, GP, "g1") is None
    assert person(linker, GP, "g2") != person(linker, ACUTE, "a2")
    assert person(linker, GP, "g3") == person(linker, ACUTE, "a3")
    report = linker.report()
    assert {d.id: d.records for d in report.datasets} == {"acute/data": 6, "gp/data": 4}
    assert report.linked_persons == 3


def test_reapplying_a_chunk_is_a_no_op(linker: Linker, store: LinkageStore) -> None:
    chunk = [record(GP.id, f"g{i}", f"n{i}", f"p{i}") for i in range(10)]
    linker.link(GP, chunk, batch_id="b1")
    linker.link(ACUTE, [record(ACUTE.id, f"a{i}", f"n{i}") for i in range(10)], batch_id="b2")
    report = linker.report()
    persons = partition(store)
    stats = linker.link(GP, chunk, batch_id="b1")
    assert stats.unchanged == 10 and stats.added == stats.changed == stats.relinked == 0
    assert linker.report() == report
    assert partition(store) == persons


def test_duplicate_refs_in_one_chunk_keep_the_last(linker: Linker) -> None:
    stats = linker.link(GP, [record(GP.id, "g", "n1"), record(GP.id, "g", "n2")], batch_id="b1")
    assert stats.added == 1
    linker.link(ACUTE, [record(ACUTE.id, "a", "n2")], batch_id="b2")
    assert person(linker, ACUTE, "a") == person(linker, GP, "g")


def test_person_ids_are_stable_across_batches(linker: Linker) -> None:
    linker.link(GP, [record(GP.id, f"g{i}", f"n{i}") for i in range(20)], batch_id="b1")
    ids = {i: person(linker, GP, f"g{i}") for i in range(20)}
    for batch in range(3):
        linker.link(
            ACUTE,
            [record(ACUTE.id, f"a{batch}-{i}", f"n{i}") for i in range(batch, 20, 3)],
            batch_id=f"a{batch}",
        )
    assert {i: person(linker, GP, f"g{i}") for i in range(20)} == ids


def test_read_side(linker: Linker, store: LinkageStore) -> None:
    linker.link(GP, [record(GP.id, "g", "n", payload=("GP1",))], batch_id="b1")
    linker.link(ACUTE, [record(ACUTE.id, "a", "n", payload=("3", None))], batch_id="b2")
    [(pid, records)] = list(store.iter_persons())
    assert pid == person(linker, GP, "g")
    assert {(r.dataset, r.ref, r.payload) for r in records} == {
        (GP.id, ref(GP.id, "g"), ("GP1",)),
        (ACUTE.id, ref(ACUTE.id, "a"), ("3", None)),
    }
    assert list(store.iter_dataset(ACUTE.id)) == [(ref(ACUTE.id, "a"), pid)]
    assert store.person_of("unknown/data", ref(GP.id, "g")) is None
    assert store.records_of_person(PersonId(999)) == []


def test_ids_leave_room_for_128_per_bucket() -> None:
    ids = [0]
    for _ in range(300):
        ids.append(next_id(ids[-1]))
    assert all(i & 0xFF < 128 for i in ids)
    assert len(set(ids)) == len(ids) and ids == sorted(ids)


def test_many_records_in_chunks(linker: Linker, store: LinkageStore) -> None:
    n = 600
    linker.link(GP, [record(GP.id, f"g{i}", f"n{i}", f"p{i}") for i in range(n)], batch_id="b1")
    linker.link(ACUTE, [record(ACUTE.id, f"a{i}", None, f"p{i}") for i in range(n)], batch_id="b2")
    report = linker.report()
    assert report.persons == n and report.linked_persons == n
    assert sum(len(records) for _, records in store.iter_persons()) == 2 * n


def test_one_linking_worker_at_a_time(client, store: LinkageStore) -> None:
    other = LinkageStore(client, scope=store.scope)
    token = store.acquire()
    ticks = iter(range(1000))
    with pytest.raises(LinkageBusyError):
        other.acquire(wait_seconds=0.5, now=lambda: float(next(ticks)))
    store.release(token)
    other.release(other.acquire(wait_seconds=0))


def test_replace_with_an_empty_snapshot_retracts_everything(linker: Linker) -> None:
    linker.link(GP, [record(GP.id, "g", "n")], batch_id="gp-1")
    stats = linker.replace_finish(GP, batch_id="gp-empty")
    assert stats.retracted == 1
    assert linker.report().records == 0 and linker.report().persons == 0


def test_slices_give_the_same_persons_as_one_commit(client) -> None:
    results = []
    for slice_size in (4096, 7, 1):
        store = LinkageStore(client, scope=f"test-{next(_scopes)}")
        linker = Linker(store, slice_size=slice_size)
        gp = [record(GP.id, f"g{i}", f"n{i}", f"p{i // 2}", f"d{i}") for i in range(40)]
        gp += [record(GP.id, "g3", "n3-changed", "p1", "d3")]  # a later slice changes g3
        linker.link(GP, gp, batch_id="b1")
        acute = [record(ACUTE.id, f"a{i}", None, f"p{i // 2}", f"d{i}") for i in range(40)]
        linker.link(ACUTE, acute, batch_id="b2")
        community = [record(COMMUNITY.id, f"c{i}", f"n{i}") for i in range(0, 40, 3)]
        linker.link(COMMUNITY, community, batch_id="b3")
        results.append((partition(store), linker.report()))
    assert results[0] == results[1] == results[2]


def test_a_new_worker_decides_as_the_worker_that_kept_the_scope_in_memory(client) -> None:
    # A record whose tokens change is indexed again; the conflict a later record records
    # names the same holder whether the worker kept the scope in memory or read it anew.
    steps = [
        (COMMUNITY, [record(COMMUNITY.id, "c1", "A", "T"), record(COMMUNITY.id, "c2", "A", "T")]),
        (COMMUNITY, [record(COMMUNITY.id, "c1", "A", "T", "Z")]),
        (GP, [record(GP.id, "q", "B")]),
        (ACUTE, [record(ACUTE.id, "x", "B", "T")]),
    ]
    kept = LinkageStore(client, scope=f"test-{next(_scopes)}")
    kept_linker = Linker(kept)
    fresh_scope = f"test-{next(_scopes)}"
    for dataset, records in steps:
        kept_linker.link(dataset, records, batch_id="b")
        Linker(LinkageStore(client, scope=fresh_scope)).link(dataset, records, batch_id="b")
    fresh = LinkageStore(client, scope=fresh_scope)
    conflicts = kept.conflicts()
    assert [(c.kind, c.record.ref, c.other.ref) for c in conflicts] == [
        ("key", ref(ACUTE.id, "x"), ref(COMMUNITY.id, "c1"))
    ]
    assert fresh.conflicts() == conflicts
    assert list(fresh.iter_persons()) == list(kept.iter_persons())


def test_a_worker_whose_lock_ran_out_cannot_write(client, store: LinkageStore) -> None:
    Linker(store).link(GP, [record(GP.id, "g", "n")], batch_id="b1")
    store.acquire()
    # The lock runs out while this worker is deciding; another worker links meanwhile.
    client.delete(keyspace.linkage_key(store.scope, keyspace.LINK_LOCK))
    Linker(LinkageStore(client, scope=store.scope)).link(
        ACUTE, [record(ACUTE.id, "a", "n")], batch_id="b2"
    )
    late = WriteSet(refs={b"\0\1" + bytes(ref(GP.id, "late")): 99})
    with pytest.raises(LinkageBusyError):
        store.commit(late)
    linker = Linker(store)
    assert linker.report().records == 2
    assert store.record_number(GP.id, ref(GP.id, "late")) is None
    assert person(linker, GP, "g") == person(linker, ACUTE, "a")
