"""The probabilistic stage's ambiguity rule: rivals in a one-record-per-person dataset.

A record that the stage finds equally like two records of one one-per-person dataset
cannot be either's match on that evidence alone (docs/linkage.md, "The probabilistic
stage"), so it links neither and keeps both as possible matches. The engine tests run
on a real redis-server with the SDK-tokenised extracts of tests/support/evidence_world.py;
the truth picks nothing.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from broker.linkage import Linker
from broker.linkage.rules import candidate_odds, outscores_rivals
from broker.store.linkage_store import LinkageStore
from tests.support.evidence_world import incoming, world

_scopes = itertools.count()
_HOSTELS = 9  # bench.populations.SCENARIOS: hostels of one community, many 1 January births


def _world():
    """The hostels extracts: large blocks, so one more holder of a token moves its term
    frequency little."""
    return world(300, scenario=_HOSTELS)


_GP, _HOSPITAL = 1, 2
_weights = st.floats(min_value=-40.0, max_value=60.0, allow_nan=False)
_thresholds = st.floats(min_value=0.51, max_value=0.9999)


def _probability(weight: float) -> float:
    odds = 2.0**weight
    return odds / (1.0 + odds)


@given(_weights, _thresholds)
def test_a_pair_without_rivals_clears_the_threshold_by_its_own_probability(weight, threshold):
    dsn_of = {10: _GP, 20: _HOSPITAL}
    totals = candidate_odds([(10, 20, weight)], dsn_of, {_GP: True, _HOSPITAL: True})
    assert outscores_rivals(10, 20, weight, totals, dsn_of, threshold) == (
        _probability(weight) >= threshold
    )


@given(_weights, _thresholds)
def test_an_equal_rival_in_the_same_dataset_always_stops_the_link(weight, threshold):
    dsn_of = {10: _GP, 11: _GP, 20: _HOSPITAL}
    pairs = [(10, 20, weight), (11, 20, weight)]
    totals = candidate_odds(pairs, dsn_of, {_GP: True, _HOSPITAL: True})
    assert not outscores_rivals(10, 20, weight, totals, dsn_of, threshold)
    assert not outscores_rivals(11, 20, weight, totals, dsn_of, threshold)


@given(_weights, st.lists(_weights, max_size=5), st.lists(_weights, max_size=5), _thresholds)
def test_more_rivals_never_make_a_link(weight, mine, theirs, threshold):
    """Rivals of either record only lower the pair's share; a pair refused stays refused."""
    opp = {_GP: True, _HOSPITAL: True}
    dsn_of = {10: _GP, 20: _HOSPITAL}
    pairs = [(10, 20, weight)]
    for i, w in enumerate(mine):  # other GP records the hospital record matches
        dsn_of[100 + i] = _GP
        pairs.append((100 + i, 20, w))
    for i, w in enumerate(theirs):  # other hospital records the GP record matches
        dsn_of[200 + i] = _HOSPITAL
        pairs.append((10, 200 + i, w))
    alone = outscores_rivals(10, 20, weight, candidate_odds(pairs[:1], dsn_of, opp), dsn_of, 0.5)
    crowded = candidate_odds(pairs, dsn_of, opp)
    for t in (0.5, threshold):
        before = outscores_rivals(10, 20, weight, candidate_odds(pairs[:1], dsn_of, opp), dsn_of, t)
        assert not outscores_rivals(10, 20, weight, crowded, dsn_of, t) or before
    assert alone == (_probability(weight) >= 0.5)


@given(_weights, _thresholds)
def test_rivals_in_a_dataset_of_several_records_a_person_do_not_count(weight, threshold):
    dsn_of = {10: _GP, 11: _GP, 20: _HOSPITAL}
    pairs = [(10, 20, weight), (11, 20, weight)]
    totals = candidate_odds(pairs, dsn_of, {_GP: False, _HOSPITAL: True})
    assert outscores_rivals(10, 20, weight, totals, dsn_of, threshold) == (
        _probability(weight) >= threshold
    )


def test_a_weight_past_the_float_range_does_not_overflow() -> None:
    dsn_of = {10: _GP, 20: _HOSPITAL}
    totals = candidate_odds([(10, 20, 5000.0)], dsn_of, {_GP: True, _HOSPITAL: True})
    assert math.isfinite(totals[(20, _GP)])
    assert outscores_rivals(10, 20, 5000.0, totals, dsn_of, 0.9999)


# Through the engine ----------------------------------------------------------------------


@pytest.fixture
def client(redis_server):
    conn = redis.Redis.from_url(redis_server.url)
    yield conn
    conn.close()


def _store(client) -> LinkageStore:
    return LinkageStore(client, scope=f"rivals-{next(_scopes)}")


def _link(store: LinkageStore) -> None:
    w = _world()
    linker = Linker(store)
    for dataset in sorted(w.chunks):
        records, layout = incoming(w.chunks[dataset], evidence=True)
        linker.link(w.info(dataset), records, batch_id=dataset, layout=layout)


def test_a_record_as_like_two_records_of_one_dataset_links_neither(client) -> None:
    """In the hostels, a hospital record the stage finds as like two GP residents (same
    names, assigned date of birth and hostel) is linked to neither, and both are kept."""
    store = _store(client)
    _link(store)
    model = store.fitted_model()
    assert model is not None
    person_of: dict[int, int] = {}
    dataset_of: dict[int, str] = {}
    datasets_of: dict[int, set[str]] = {}
    for pid, records in store.iter_persons():
        for rid, record in zip(store.person_record_numbers(pid), records, strict=True):
            person_of[rid], dataset_of[rid] = int(pid), record.dataset
        datasets_of[int(pid)] = {r.dataset for r in records}
    above: dict[tuple[int, str], list[int]] = defaultdict(list)
    names = [b.name for b in model.layout.blocks]
    for match in store.possible_matches(limit=10**6):
        threshold = model.thresholds.link_of(names.index(match.blocking_key))
        if match.reason == "rival" and match.probability >= threshold:
            above[(match.record, match.other_dataset)].append(match.other)
    contested = {key: others for key, others in above.items() if len(others) >= 2}
    assert contested, "the hostels hold residents one record matches alike"
    for (rid, _), others in contested.items():
        # Without the rule the best of them would be linked and the next refused as a twin.
        assert datasets_of[person_of[rid]] == {dataset_of[rid]}
        assert all(person_of[other] != person_of[rid] for other in others)
