"""The probabilistic stage inside the engine, on a real redis-server (docs/linkage.md).

Two synthetic extracts (tests/support/evidence_world.py) are linked by
``broker.linkage.Linker`` as ingest hands them over: the cascade, then the stage. The
truth is used only to assert; the engine never sees it.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter, defaultdict

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.linkage import LinkBasis, Linker, PossibleMatch
from broker.matching import (
    BlockLayout,
    Layout,
    RecordEvidence,
    agreement,
    candidate_pairs,
    model_from_json,
    model_to_json,
)
from broker.store import keyspace
from broker.store.linkage_codec import stored_dsn
from broker.store.linkage_counts import (
    CANDIDATE,
    FIELD_PREFIX,
    KNOWN,
    SAME,
    SAMPLE_FROM,
    in_sample,
    parse_field,
    pattern_field,
    sample_shift,
)
from broker.store.linkage_evidence import (
    POSSIBLE_REASONS,
    column_tokens,
    decode_evidence,
    encode_evidence,
    holds_token,
    levels_vector,
    raw_agreement,
    raw_levels,
)
from broker.store.linkage_store import LinkageStore
from tests.support.evidence_world import incoming, world

_scopes = itertools.count()


@pytest.fixture
def client(redis_server):
    conn = redis.Redis.from_url(redis_server.url)
    yield conn
    conn.close()


def _store(client) -> LinkageStore:
    return LinkageStore(client, scope=f"prob-{next(_scopes)}")


def _link_all(linker: Linker, *, evidence: bool = True, order=None, slice_size=None):
    w = world()
    stats = []
    for dataset in order or sorted(w.chunks):
        records, layout = incoming(w.chunks[dataset], evidence=evidence)
        stats.append(linker.link(w.info(dataset), records, batch_id=dataset, layout=layout))
    return stats


def _persons(store: LinkageStore) -> dict[tuple[str, bytes], int]:
    return {(r.dataset, bytes(r.ref)): int(pid) for pid, rs in store.iter_persons() for r in rs}


def _pairs(person_of: dict[tuple[str, bytes], int]) -> tuple[int, int, int]:
    """(linked pairs, of them true, true pairs) of two-dataset pairs."""
    truth = world().person
    groups: dict[int, list[tuple[str, bytes]]] = defaultdict(list)
    for key, pid in person_of.items():
        groups[pid].append(key)
    found = correct = 0
    for members in groups.values():
        for a, b in itertools.combinations(members, 2):
            if a[0] != b[0]:
                found += 1
                correct += truth[a] == truth[b]
    true_groups: dict[int, list[str]] = defaultdict(list)
    for (dataset, _), p in truth.items():
        true_groups[p].append(dataset)
    true_pairs = sum(
        1 for ds in true_groups.values() for a, b in itertools.combinations(ds, 2) if a != b
    )
    return found, correct, true_pairs


def _check_invariants(store: LinkageStore, linker: Linker) -> None:
    """tests/broker/test_linkage_properties.py's invariants, with the stage's links."""
    persons = list(store.iter_persons())
    seen: set[tuple[str, bytes]] = set()
    for pid, records in persons:
        assert records
        assert max(Counter(r.dataset for r in records).values()) == 1, "twin guard"
        for r in records:
            key = (r.dataset, bytes(r.ref))
            assert key not in seen
            seen.add(key)
        assert linker.person_of(records[0].dataset, records[0].ref) == pid
    report = linker.report()
    assert report.records == len(seen)
    assert report.persons == len(persons)
    assert report.linked_persons == sum(1 for _, rs in persons if len({r.dataset for r in rs}) > 1)
    # every record started its person or joined it through a key or the stage
    assert sum(report.links_by_key.values()) + report.persons == report.records


def test_the_stage_finds_true_links_the_cascade_missed(client) -> None:
    cascade_store, stage_store = _store(client), _store(client)
    _link_all(Linker(cascade_store), evidence=False)
    stats = _link_all(Linker(stage_store))
    found_c, correct_c, true_pairs = _pairs(_persons(cascade_store))
    found, correct, _ = _pairs(_persons(stage_store))
    assert correct_c < true_pairs  # the data has links the cascade misses
    assert correct > correct_c
    assert correct == found  # no false link on this extract
    _check_invariants(stage_store, Linker(stage_store))
    report = Linker(stage_store).report()
    assert report.links_by_key.get("probabilistic", 0) == sum(s.probabilistic_links for s in stats)
    assert report.links_by_key["probabilistic"] == correct - correct_c
    assert cascade_store.fitted_model() is None


def test_the_fitted_model_is_stored_and_read_back(client) -> None:
    store = _store(client)
    _link_all(Linker(store))
    model = store.fitted_model()
    assert model is not None
    assert model_from_json(model_to_json(model)) == model
    assert 0.9 <= model.thresholds.link <= 1.0
    assert model.records == sum(len(c) for c in world().chunks.values())
    for block in model.blocks:
        for weights in block.comparisons:
            assert abs(sum(weights.m) - 1) < 1e-9 and abs(sum(weights.u) - 1) < 1e-9


def test_every_link_has_its_basis(client) -> None:
    store = _store(client)
    _link_all(Linker(store))
    model = store.fitted_model()
    assert model is not None
    key_names = {k.name for k in world().spec.match_keys}
    block_names = {b.name for b in model.layout.blocks}
    kinds: dict[str, int] = defaultdict(int)
    for pid, _ in store.iter_persons():
        rids = store.person_record_numbers(pid)
        bases = store.link_basis(rids)
        assert set(bases) == set(rids)
        for rid, basis in bases.items():
            kinds[basis.kind] += 1
            if len(rids) == 1:
                assert basis.kind == "unlinked"
            elif basis.kind == "match_key":
                assert basis.match_key in key_names
            else:
                assert basis.kind == "probabilistic"
                assert basis.probability is not None
                assert basis.probability >= model.thresholds.link
                assert basis.blocking_key in block_names
                assert basis.partner in rids and basis.partner != rid
                layout = next(b for b in model.layout.blocks if b.name == basis.blocking_key)
                assert [c for c, _ in basis.agreement] == list(layout.comparisons)
    assert kinds["probabilistic"] >= 2 and kinds["match_key"] and kinds["unlinked"]


def test_possible_matches_are_never_linked(client) -> None:
    store = _store(client)
    _link_all(Linker(store))
    model = store.fitted_model()
    assert model is not None
    persons = {
        rid: int(pid) for pid, _ in store.iter_persons() for rid in store.person_record_numbers(pid)
    }
    for match in store.possible_matches():
        assert match.reason in POSSIBLE_REASONS
        assert match.probability >= model.thresholds.review
        assert match.record_dataset != match.other_dataset
        if match.reason == "grey":
            assert match.probability < model.thresholds.link
            assert persons[match.record] != persons[match.other]


def test_linking_the_same_chunks_again_changes_nothing(client) -> None:
    store = _store(client)
    linker = Linker(store)
    _link_all(linker)
    before = (_persons(store), store.possible_matches(), linker.report())
    again = _link_all(linker)
    assert all(s.added == 0 and s.probabilistic_links == 0 for s in again)
    assert (_persons(store), store.possible_matches(), linker.report()) == before


@settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(cut=st.integers(0, 400), sample_from=st.sampled_from([SAMPLE_FROM, 150]))
def test_a_new_worker_reads_the_evidence_back_and_decides_alike(client, cut, sample_from) -> None:
    """Persons are stable across a new worker: it rebuilds the block index and the model
    from Redis at any point and decides as the worker that kept its mirror, on the
    whole holding's counts and on a sample's."""
    w = world()
    first, second = sorted(w.chunks)
    one, two = _store(client), _store(client)
    kept, before = Linker(one, sample_from=sample_from), Linker(two, sample_from=sample_from)
    records, layout = incoming(w.chunks[first])
    later, _ = incoming(w.chunks[second])
    for linker in (kept, before):
        linker.link(w.info(first), records, batch_id=first, layout=layout)
        linker.link(w.info(second), later[:cut], batch_id=second, layout=layout)
    fresh = LinkageStore(client, scope=two.scope)  # another process: an empty mirror
    for linker in (kept, Linker(fresh, sample_from=sample_from)):
        linker.link(w.info(second), later[cut:], batch_id=second, layout=layout)
    assert _persons(one) == _persons(fresh)
    assert one.possible_matches() == fresh.possible_matches()
    assert one.fitted_model() == fresh.fitted_model()
    pattern = keyspace.linkage_base(one.scope).replace("{", "\\{").replace("}", "\\}")
    assert list(client.scan_iter(match=pattern + keyspace.LINK_EVIDENCE + ":*"))


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    slice_size=st.sampled_from([97, 4096]),
    retract=st.lists(st.integers(0, 299), max_size=12, unique=True),
    hospital_first=st.booleans(),
    sample_from=st.sampled_from([SAMPLE_FROM, 150]),
)
def test_both_paths_decide_the_stage_alike(
    client, slice_size, retract, hospital_first, sample_from
) -> None:
    """The differential test of tests/broker/test_linkage_paths.py, with evidence."""
    w = world()
    order = sorted(w.chunks, reverse=hospital_first)
    results = []
    for clean in (True, False):
        store = _store(client)
        linker = Linker(store, slice_size=slice_size, clean_path=clean, sample_from=sample_from)
        stats = _link_all(linker, order=order)
        dataset = order[0]
        refs = [w.chunks[dataset].refs[i] for i in retract if i < len(w.chunks[dataset])]
        stats.append(linker.retract(w.info(dataset), refs, batch_id="r"))
        records, layout = incoming(w.chunks[dataset])
        stats.append(linker.link(w.info(dataset), records, batch_id="again", layout=layout))
        _check_invariants(store, linker)
        rids = [rid for pid, _ in store.iter_persons() for rid in store.person_record_numbers(pid)]
        results.append(
            (
                stats,
                _persons(store),
                store.possible_matches(),
                linker.report(),
                store.link_basis(rids),
                store.conflicts(),
            )
        )
    assert results[0] == results[1]


@pytest.mark.parametrize("sample_from", [SAMPLE_FROM, 150])
def test_a_refit_never_silently_unlinks(client, sample_from) -> None:
    """Links released before a refit stay linked; those the new model doubts are listed
    (refits on the whole holding's counts, and on a sample's as it moves on)."""
    w = world()
    store = _store(client)
    # many slices: the model is refitted as it grows
    linker = Linker(store, slice_size=64, sample_from=sample_from)
    released: dict[int, int] = {}
    refits = 0
    last = None
    for dataset in sorted(w.chunks):
        records, layout = incoming(w.chunks[dataset])
        for start in range(0, len(records), 64):
            linker.link(
                w.info(dataset), records[start : start + 64], batch_id=dataset, layout=layout
            )
            model = store.fitted_model()
            refits += model is not None and model != last
            last = model
            persons = {
                rid: int(pid)
                for pid, _ in store.iter_persons()
                for rid in store.person_record_numbers(pid)
            }
            for rid, partner in released.items():
                assert persons[rid] == persons[partner]
            for rid, basis in store.link_basis(list(persons)).items():
                if basis.kind == "probabilistic" and basis.partner is not None:
                    released.setdefault(rid, basis.partner)
    assert refits >= 2 and released
    model = store.fitted_model()
    assert model is not None
    doubted = {(m.record, m.other) for m in store.possible_matches() if m.reason == "refit"}
    names = [b.name for b in model.layout.blocks]
    for rid, basis in store.link_basis(list(released)).items():
        if basis.probability is None or basis.blocking_key is None:
            continue
        # judged against the threshold of the key it linked by
        if basis.probability < model.thresholds.link_of(names.index(basis.blocking_key)):
            assert (rid, basis.partner) in doubted


def test_datasets_that_share_nobody_get_no_model_and_no_links(client) -> None:
    """Two halves of one GP register hold different people: look-alike strangers there
    must not be taken for matches, so without a cascade link no model is used."""
    w = world()
    gp = next(d for d in sorted(w.chunks) if d.startswith("gp"))
    records, layout = incoming(w.chunks[gp])
    half = len(records) // 2
    store = _store(client)
    linker = Linker(store)
    for name, part in (("gp/a", records[:half]), ("gp/b", records[half:])):
        info = w.info(gp)
        info = type(info)(name, info.org, True, info.key_names)
        stats = linker.link(info, part, batch_id=name, layout=layout)
        assert stats.probabilistic_links == 0
    assert store.fitted_model() is None
    assert store.possible_matches() == []
    other = next(d for d in sorted(w.chunks) if d != gp)
    records, layout = incoming(w.chunks[other])
    linker.link(w.info(other), records, batch_id=other, layout=layout)
    model = store.fitted_model()
    assert model is not None and sum(b.known_matches for b in model.blocks) >= 20


def test_a_refit_on_demand_stores_the_model_and_changes_no_link(client) -> None:
    store = _store(client)
    linker = Linker(store)
    _link_all(linker)
    before = (_persons(store), linker.report())
    model = linker.refit()
    assert model is not None and model == store.fitted_model()
    assert model.records == sum(len(c) for c in world().chunks.values())
    assert (_persons(store), linker.report()) == before
    assert Linker(_store(client)).refit() is None  # nothing held: nothing to fit


def _stored_counts(client, store: LinkageStore) -> dict[bytes, int]:
    raw = client.hgetall(keyspace.linkage_key(store.scope, keyspace.LINK_MODEL))
    return {k: int(v) for k, v in raw.items() if k.startswith(FIELD_PREFIX) and int(v)}


def _shift(client, store: LinkageStore) -> int:
    """The sample the scope's counts are kept on (``broker.store.linkage_counts``)."""
    return int(client.hget(keyspace.linkage_key(store.scope, keyspace.LINK_META), "shift") or 0)


def _recounted(store: LinkageStore, shift: int = 0) -> Counter[bytes]:
    """The candidate and one-dataset counts, made from scratch over the held evidence of
    the blocks in the sample at ``shift``."""
    layout = store.fitted_model()
    assert layout is not None
    dsns = {rid: stored_dsn(raw) for rid, raw in store.scan_buckets(keyspace.LINK_RECORDS, "rid")}
    held = []
    for rid, raw in store.scan_buckets(keyspace.LINK_EVIDENCE, "rid"):
        blocks, cells = decode_evidence(raw)
        kept = tuple(
            None if t is None or not in_sample(bytes((j,)) + t, shift) else t
            for j, t in enumerate(blocks)
        )
        held.append(RecordEvidence(rid, str(dsns[rid]), kept, cells))
    out: Counter[bytes] = Counter()
    n_blocks = len(layout.layout.blocks)
    for kind, same in ((CANDIDATE, False), (SAME, True)):
        pairs = candidate_pairs(held, n_blocks=n_blocks, same_dataset=same)
        for j, block_pairs in enumerate(pairs):
            for a, b in block_pairs:
                vector = agreement(layout.layout.blocks[j], a, b)
                out[pattern_field(kind, j, vector, int(a.dataset) if same else 0)] += 1
    return out


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    cut=st.integers(0, 400),
    slice_size=st.sampled_from([64, 4096]),
    sample_from=st.sampled_from([SAMPLE_FROM, 150, 40]),
)
def test_a_new_worker_mid_stream_continues_the_same_pattern_counts(
    client, cut, slice_size, sample_from
) -> None:
    """The fit's agreement-pattern counts are kept as records arrive and written with
    each slice: a new worker at any cut continues the very counts (so fits the same
    model), and they are exactly the pairs of the holding's sampled blocks, counted
    from scratch — the same sample whoever counts, however the records were sliced."""
    w = world()
    first, second = sorted(w.chunks)
    one, two = _store(client), _store(client)
    kept = Linker(one, slice_size=slice_size, sample_from=sample_from)
    records, layout = incoming(w.chunks[first])
    later, _ = incoming(w.chunks[second])
    for linker in (kept, Linker(two, slice_size=slice_size, sample_from=sample_from)):
        linker.link(w.info(first), records, batch_id=first, layout=layout)
        linker.link(w.info(second), later[:cut], batch_id=second, layout=layout)
    fresh = LinkageStore(client, scope=two.scope)  # another process: an empty mirror
    for linker in (kept, Linker(fresh, slice_size=slice_size, sample_from=sample_from)):
        linker.link(w.info(second), later[cut:], batch_id=second, layout=layout)
    counts = _stored_counts(client, one)
    assert counts and counts == _stored_counts(client, two)
    assert one.fitted_model() == fresh.fitted_model()
    shift = _shift(client, one)
    held = sum(1 for _ in one.scan_buckets(keyspace.LINK_EVIDENCE, "rid"))
    assert shift == _shift(client, two) == sample_shift(held, sample_from)
    assert (shift > 0) == (sample_from < SAMPLE_FROM)
    kinds = Counter(parse_field(k)[0] for k in counts)
    assert kinds[CANDIDATE] and kinds[SAME] and kinds[KNOWN]
    scratch = {k: v for k, v in counts.items() if parse_field(k)[0] != KNOWN}
    assert scratch == _recounted(one, shift)
    if shift:  # the sample counts fewer pairs than the whole holding has
        full = {k: v for k, v in _recounted(one).items() if v}
        assert sum(scratch.values()) < sum(full.values())
    for key, count in counts.items():  # a known match is a candidate pair too
        kind, j, _, vector = parse_field(key)
        if kind == KNOWN:
            assert count <= counts[pattern_field(CANDIDATE, j, vector)]


def test_a_retraction_takes_its_pairs_out_of_the_counts(client) -> None:
    """Records that leave take their pairs with them: the counts stay the holding's."""
    w = world()
    first, second = sorted(w.chunks)
    store = _store(client)
    linker = Linker(store)
    records, layout = incoming(w.chunks[first])
    later, _ = incoming(w.chunks[second])
    linker.link(w.info(first), records, batch_id=first, layout=layout)
    linker.link(w.info(second), later, batch_id=second, layout=layout)
    before = _stored_counts(client, store)
    linker.link(w.info(second), later[: len(later) // 2], batch_id="again", layout=layout)
    linker.replace_finish(w.info(second), batch_id="again")
    after = _stored_counts(client, store)
    assert after != before
    assert {k: v for k, v in after.items() if parse_field(k)[0] != KNOWN} == _recounted(store)


def test_a_holding_without_counts_is_counted_when_read(client) -> None:
    """A scope stored before the counts were kept is counted once by the worker that
    reads it, and the counts it writes are the holding's pairs from then on."""
    w = world()
    first, second = sorted(w.chunks)
    store = _store(client)
    records, layout = incoming(w.chunks[first])
    later, _ = incoming(w.chunks[second])
    linker = Linker(store)
    linker.link(w.info(first), records, batch_id=first, layout=layout)
    linker.link(w.info(second), later[:100], batch_id=second, layout=layout)
    key = keyspace.linkage_key(store.scope, keyspace.LINK_MODEL)
    client.hdel(key, *_stored_counts(client, store))
    assert not _stored_counts(client, store)
    fresh = LinkageStore(client, scope=store.scope)
    Linker(fresh).link(w.info(second), later[100:], batch_id=second, layout=layout)
    counts = _stored_counts(client, fresh)
    assert {k: v for k, v in counts.items() if parse_field(k)[0] != KNOWN} == _recounted(fresh)


def test_bases_and_possible_matches_hold_no_token_or_reference(client) -> None:
    """What reports and review files read names comparisons and levels, never bytes."""
    store = _store(client)
    _link_all(Linker(store))
    rids = [rid for pid, _ in store.iter_persons() for rid in store.person_record_numbers(pid)]
    items: list[LinkBasis | PossibleMatch] = [
        *store.link_basis(rids).values(),
        *store.possible_matches(),
    ]
    assert any(getattr(i, "kind", "") == "probabilistic" for i in items)

    def flat(value):
        if isinstance(value, tuple):
            for v in value:
                yield from flat(v)
        else:
            yield value

    for item in items:
        for field in dataclasses.fields(item):
            assert not any(isinstance(v, bytes) for v in flat(getattr(item, field.name)))


def test_evidence_of_another_layout_is_not_kept(client) -> None:
    """Another spec's evidence could never agree with the domain's: it is not stored."""
    w = world()
    first, second = sorted(w.chunks)
    store = _store(client)
    linker = Linker(store)
    records, layout = incoming(w.chunks[first])
    assert layout is not None
    linker.link(w.info(first), records, batch_id=first, layout=layout)
    later, _ = incoming(w.chunks[second])
    other = Layout(layout.blocks[:1])
    stats = linker.link(w.info(second), later, batch_id=second, layout=other)
    assert stats.probabilistic_links == 0
    pattern = keyspace.linkage_base(store.scope).replace("{", "\\{").replace("}", "\\}")
    held = sum(
        client.hlen(key) for key in client.scan_iter(match=pattern + keyspace.LINK_EVIDENCE + ":*")
    )
    assert held == len(records)
    assert store.fitted_model() is None


_cells = st.lists(
    # tokens that share their first bytes too: the comparison reads them byte by byte
    st.lists(st.sampled_from([b"aaaa", b"aaab", b"aaba", b"abaa", b"baaa"]), max_size=3),
    min_size=6,
    max_size=6,
)


@given(a=_cells, b=_cells, split=st.integers(1, 5))
def test_agreement_read_in_place_is_the_decoded_agreement(a, b, split) -> None:
    """The counts read agreement vectors from the stored bytes without decoding them;
    they must be the vectors the scorer computes from decoded evidence."""
    columns = (tuple(range(split)), tuple(range(split, 6)))
    block = BlockLayout("k", ("x", "y"), (("l",) * split, ("l",) * (6 - split)), columns)
    raws, decoded = [], []
    for rid, cells in ((1, a), (2, b)):
        raw = encode_evidence(
            (b"B" * 10, None), bytes(len(c) for c in cells), b"".join(t for c in cells for t in c)
        )
        blocks, decoded_cells = decode_evidence(raw)
        raws.append(raw)
        decoded.append(RecordEvidence(rid, "1", blocks, decoded_cells))
    in_place = raw_agreement(columns, raws[0], raws[1])
    assert in_place == agreement(block, decoded[0], decoded[1])
    assert levels_vector(raw_levels(columns, raws[1], raws[0])) == in_place
    backwards = (columns[1][::-1], columns[0])  # a walk that must start again
    block = BlockLayout("k", ("y", "x"), (block.levels[1], block.levels[0]), backwards)
    assert raw_agreement(backwards, raws[0], raws[1]) == agreement(block, decoded[0], decoded[1])
    for column, cells in enumerate(a):
        assert column_tokens(raws[0], column) == list(cells)
        for token in (b"aaaa", b"aaab", b"aaba", b"abaa", b"baaa"):
            assert holds_token(raws[0], column, token) == (token in cells)
