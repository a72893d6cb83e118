"""The probabilistic stage's cheaper reading: the block sample and in-place scoring.

The counts a fit runs EM over are kept on a sample of blocks past a size
(``broker.store.linkage_counts``), and a slice's candidates are scored from the stored
evidence in place, dropping the pairs that cannot reach the review threshold
(``broker.linkage.scoring``). Neither may change what the stage decides from what it
is given: the sample is a function of the stored block token alone, and the scores
kept are exactly those of ``broker.matching.score_pairs``. The engine-level properties
(a new worker at any cut, both paths, refits) run with a sample in
tests/broker/test_linkage_probabilistic.py.
"""

from __future__ import annotations

import dataclasses
import gc
import itertools

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.linkage import Linker
from broker.linkage.scoring import score_candidates
from broker.matching import RecordEvidence, score_pairs
from broker.store.linkage_codec import stored_dsn
from broker.store.linkage_counts import in_sample, sample_shift
from broker.store.linkage_evidence import decode_evidence
from broker.store.linkage_store import LinkageStore
from tests.support.evidence_world import incoming, world

_scopes = itertools.count()


@pytest.fixture(scope="module")
def linked(redis_server):
    """The test world linked once: the store (its mirror held), every record's decoded
    evidence, and the fitted model."""
    client = redis.Redis.from_url(redis_server.url)
    store = LinkageStore(client, scope=f"sample-{next(_scopes)}")
    linker = Linker(store)
    w = world()
    for dataset in sorted(w.chunks):
        records, layout = incoming(w.chunks[dataset])
        linker.link(w.info(dataset), records, batch_id=dataset, layout=layout)
    model = store.fitted_model()
    assert model is not None
    token = store.acquire()
    mirror = store.mirror
    held = {
        rid: RecordEvidence(rid, str(stored_dsn(mirror.records[rid])), *decode_evidence(raw))
        for rid, raw in mirror.evidence.items()
    }
    yield store, held, model
    store.release(token)
    client.close()


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    review=st.sampled_from([0.5, 0.05, 1e-6, 0.0]),
    max_block=st.sampled_from([500, 6, 3]),
)
def test_in_place_scoring_keeps_exactly_the_pairs_score_pairs_gives(
    linked, data, review, max_block
) -> None:
    """For any slice of held records, any review threshold and any block cap, the pairs
    scored in place are ``score_pairs`` over the slice and the whole holding, less the
    pairs below the review threshold: the same pairs, scores, keys and order."""
    store, held, model = linked
    rids = sorted(held)
    new = data.draw(
        st.one_of(
            st.just(rids),
            st.lists(st.sampled_from(rids), min_size=1, max_size=60, unique=True),
        )
    )
    model = dataclasses.replace(
        model,
        thresholds=dataclasses.replace(model.thresholds, review=review),
        max_block=max_block,
    )
    expected = [
        p
        for p in score_pairs(model, [held[r] for r in new], list(held.values()))
        if p.probability >= review
    ]
    assert score_candidates(model, store.mirror, new) == expected


def test_in_place_scoring_drops_only_pairs_below_review(linked) -> None:
    """Over the whole holding, pairs below review are dropped and only they are."""
    store, held, model = linked
    everything = score_pairs(model, list(held.values()), list(held.values()))
    kept = score_candidates(model, store.mirror, sorted(held))
    assert kept and len(kept) < len(everything)
    assert kept == [p for p in everything if p.probability >= model.thresholds.review]


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(kept=st.integers(0, 300), changed=st.integers(0, 300), by=st.integers(1, 299))
def test_the_evidence_by_record_number_is_the_evidence_held(
    redis_server, kept, changed, by
) -> None:
    """The mirror's evidence by record number, which the scoring and counting loops read,
    stays the evidence it holds as records come, change their evidence and leave; a new
    worker's mirror, read from Redis, holds the same."""
    client = redis.Redis.from_url(redis_server.url)
    store = LinkageStore(client, scope=f"sample-{next(_scopes)}")
    linker = Linker(store)
    w = world()
    first, second = sorted(w.chunks)
    records, layout = incoming(w.chunks[first])
    later, _ = incoming(w.chunks[second])
    linker.link(w.info(first), records, batch_id=first, layout=layout)
    linker.link(w.info(second), later, batch_id=second, layout=layout)
    again = [
        dataclasses.replace(r, evidence=later[(i + by) % len(later)].evidence) if i < changed else r
        for i, r in enumerate(later[:kept])
    ]
    linker.link(w.info(second), again, batch_id="again", layout=layout)
    linker.replace_finish(w.info(second), batch_id="again")
    try:
        for reader in (store, LinkageStore(client, scope=store.scope)):
            token = reader.acquire()
            try:
                mirror = reader.mirror
                by_number = {rid: raw for rid, raw in enumerate(mirror.evidence_at) if raw}
                assert by_number == mirror.evidence
                assert len(mirror.evidence) == len(records) + min(kept, len(later))
            finally:
                reader.release(token)
    finally:
        client.close()


_keys = st.binary(min_size=11, max_size=11)


@given(key=_keys, shift=st.integers(0, 31))
def test_the_samples_are_nested(key, shift) -> None:
    """A block leaves the sample as the shift grows and never comes back, so moving on
    only takes pairs away."""
    if in_sample(key, shift + 1):
        assert in_sample(key, shift)
    assert in_sample(key, 0)


@given(prefix=st.binary(min_size=1, max_size=1), rest=st.binary(min_size=10, max_size=10))
def test_the_sample_is_a_function_of_the_stored_block_token(prefix, rest) -> None:
    """Whoever counts, the same block token is in or out at a shift; which blocking key
    it is under does not matter."""
    for shift in range(8):
        assert in_sample(prefix + rest, shift) == in_sample(b"\x02" + rest, shift)


def test_the_sample_rate_halves_with_each_shift() -> None:
    keys = [bytes((0,)) + i.to_bytes(4, "big") * 2 + b"\x00\x00" for i in range(0, 2**32, 2**20)]
    for shift in range(6):
        kept = sum(in_sample(k, shift) for k in keys)
        assert kept == len(keys) >> shift


@given(held=st.integers(0, 10**8), sample_from=st.integers(1, 10**6))
def test_the_shift_keeps_the_sample_near_its_size(held, sample_from) -> None:
    """Past ``sample_from`` records the sample holds between half of it and all of it, on
    average; never a sample below it."""
    shift = sample_shift(held, sample_from)
    assert held / 2**shift <= sample_from
    if shift:
        assert held / 2 ** (shift - 1) > sample_from
    assert sample_shift(held + 1, sample_from) >= shift


@pytest.mark.parametrize("running", [True, False])
def test_a_call_leaves_the_cyclic_collector_as_it_found_it(redis_server, running) -> None:
    """The engine pauses the collector while it links, and gives it back afterwards —
    also when the call fails — never turning on one that its caller had turned off."""
    client = redis.Redis.from_url(redis_server.url)
    store = LinkageStore(client, scope=f"sample-{next(_scopes)}")
    w = world()
    dataset = sorted(w.chunks)[0]
    records, layout = incoming(w.chunks[dataset])
    was = gc.isenabled()
    try:
        if not running:
            gc.disable()
        Linker(store).link(w.info(dataset), records[:50], batch_id=dataset, layout=layout)
        assert gc.isenabled() == running
        with pytest.raises((AttributeError, TypeError)):  # not a record (compiled: TypeError)
            Linker(store).link(w.info(dataset), [None], batch_id=dataset, layout=layout)  # type: ignore[list-item]
        assert gc.isenabled() == running
    finally:
        if was:
            gc.enable()
        client.close()
