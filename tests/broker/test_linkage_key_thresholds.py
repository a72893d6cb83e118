"""A link threshold per blocking key, through the engine on a real redis-server.

The engine's refit walks each key's own candidate-pair counts (docs/probabilistic.md,
The shape, point 7): here one key's counts gain a mass of pairs of one middling
pattern, as blocks of look-alike namesakes would give it: the other keys' models do
not move, and a new worker's refit walks every key's threshold again from the stored
counts. The rule itself (a key below the pooled walk keeps its own threshold) is
tested in tests/broker/test_key_thresholds.py.
"""

from __future__ import annotations

import itertools

import pytest
import redis

from broker.linkage import Linker
from broker.matching import Model, Thresholds, model_from_json, model_to_json
from broker.matching.incremental import key_thresholds
from broker.store import keyspace
from broker.store.linkage_counts import CANDIDATE, FIELD_PREFIX, KNOWN, parse_field, pattern_field
from broker.store.linkage_store import LinkageStore
from tests.support.evidence_world import incoming, world

_scopes = itertools.count()
_PEOPLE = 3000
"""Enough people for each of the larger keys to have a threshold of its own (1,000
pairs at or above the floor)."""


@pytest.fixture
def client(redis_server):
    conn = redis.Redis.from_url(redis_server.url)
    yield conn
    conn.close()


def _linked(client) -> LinkageStore:
    store = LinkageStore(client, scope=f"keythr-{next(_scopes)}")
    linker = Linker(store)
    w = world(_PEOPLE)
    for dataset in sorted(w.chunks):
        records, layout = incoming(w.chunks[dataset])
        linker.link(w.info(dataset), records, batch_id=dataset, layout=layout)
    return store


def _counts(client, store: LinkageStore) -> dict[bytes, int]:
    raw = client.hgetall(keyspace.linkage_key(store.scope, keyspace.LINK_MODEL))
    return {k: int(v) for k, v in raw.items() if k.startswith(FIELD_PREFIX) and int(v)}


def test_each_key_has_its_own_threshold_stored_with_the_model(client) -> None:
    store = _linked(client)
    model = store.fitted_model()
    assert model is not None
    thresholds = model.thresholds
    assert len(thresholds.keys) == len(model.layout.blocks)
    assert model_from_json(model_to_json(model)) == model
    # the engine's thresholds are the rule over each key's own stored counts
    assert _rule(_counts(client, store), model) == thresholds
    assert all(t <= thresholds.link for t in thresholds.keys)


def _rule(counts: dict[bytes, int], model: Model) -> Thresholds:
    """``key_thresholds`` over the stored counts, each key's pairs scored by its model."""
    scored: list[list[tuple[float, int]]] = [[] for _ in model.blocks]
    known = [0] * len(model.blocks)
    for field, count in counts.items():
        kind, j, _, vector = parse_field(field)
        if kind == CANDIDATE:
            scored[j].append((model.blocks[j].probability(vector), count))
        elif kind == KNOWN:
            known[j] += count
    return key_thresholds(scored, known, min_known=20)


def _big_keys(counts: dict[bytes, int], model: Model) -> set[int]:
    """The keys with a threshold of their own: 1,000 pairs at or above the floor and 20
    known matches (``key_thresholds``)."""
    above = [0] * len(model.blocks)
    known = [0] * len(model.blocks)
    for field, count in counts.items():
        kind, j, _, vector = parse_field(field)
        if kind == CANDIDATE and model.blocks[j].probability(vector) >= 0.9:
            above[j] += count
        elif kind == KNOWN:
            known[j] += count
    return {j for j in range(len(model.blocks)) if above[j] >= 1000 and known[j] >= 20}


def test_a_key_with_ambiguous_blocks_leaves_the_other_keys_models(client) -> None:
    store = _linked(client)
    before = store.fitted_model()
    assert before is not None
    names = [b.name for b in before.layout.blocks]
    ambiguous = names.index("postcode_year")
    counts = _counts(client, store)
    big = _big_keys(counts, before) - {ambiguous}
    assert len(big) >= 2
    # look-alike namesakes under postcode_year: many pairs of one pattern that the key
    # scores above the floor but short of certain (a hostel's residents "born" 1 January
    # of one year)
    probability, vector = min(
        (
            (before.blocks[ambiguous].probability(v), v)
            for kind, j, _, v in map(parse_field, counts)
            if kind == CANDIDATE and j == ambiguous
        ),
        key=lambda pv: (not 0.9 <= pv[0] < 0.999, abs(pv[0] - 0.95)),
    )
    assert 0.9 <= probability < 0.999
    key = keyspace.linkage_key(store.scope, keyspace.LINK_MODEL)
    client.hincrby(key, pattern_field(CANDIDATE, ambiguous, vector), 5_000)
    after = Linker(LinkageStore(client, scope=store.scope)).refit()  # a new worker's refit
    assert after is not None
    # the key's own fit moved with its pairs; the others' models did not
    assert after.blocks[ambiguous] != before.blocks[ambiguous]
    for j in big:
        assert after.blocks[j] == before.blocks[j], names[j]
    # and every threshold is walked again from the stored counts, none above the pooled
    assert _rule(_counts(client, store), after) == after.thresholds
    assert all(t <= after.thresholds.link for t in after.thresholds.keys)
