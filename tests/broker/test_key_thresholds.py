"""A link threshold per blocking key (docs/probabilistic.md, The shape, point 7).

A key whose own pairs the model expects clean further down than the pooled walk links
down to its own walk's threshold, so one key's ambiguous blocks cannot raise another's;
every other key, and any whose fit rests on little, keeps the pooled threshold; and a
pair in several keys' blocks is judged under a key whose threshold it clears.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.matching import ScoredPair, Thresholds, prefer_key
from broker.matching.incremental import counted_threshold, key_thresholds

_RATE = 0.001


def _above(pairs: list[tuple[float, int]], threshold: float) -> tuple[float, int]:
    """The model's expected wrong links and the count of the pairs strictly above."""
    kept = [(p, n) for p, n in pairs if p > threshold and n > 0]
    return sum((1 - p) * n for p, n in kept), sum(n for _, n in kept)


def test_an_ambiguous_key_does_not_raise_another_keys_threshold() -> None:
    clear = [(0.9999, 2000), (0.985, 100)]  # within the rate down to 0.985
    ambiguous = [(0.99, 1000), (0.985, 1000)]  # 1% expected wrong even at its best
    alone = key_thresholds([clear], [500], min_known=20)
    both = key_thresholds([clear, ambiguous], [500, 500], min_known=20)
    assert alone.keys == (0.985,)
    # one walk over both raises every key's threshold: the clear key keeps its own
    assert both.link == counted_threshold(clear + ambiguous) == 0.99
    assert both.keys == (0.985, 0.99)
    assert both.link_of(0) == 0.985 and both.link_of(1) == 0.99


def test_a_key_whose_own_walk_is_stricter_keeps_the_pooled_threshold() -> None:
    near_certain = [(0.99999, 5000)]  # the NHS number's blocks: every pair near-certain
    names = [(0.995, 1100)]  # by its own pairs, one in 200 wrong: it links nothing
    assert counted_threshold(names) == 1.0
    thresholds = key_thresholds([near_certain, names], [500, 500], min_known=20)
    assert thresholds.link == counted_threshold(near_certain + names) == 0.995
    assert thresholds.keys[1] == thresholds.link  # not raised to its own walk's


def test_a_key_resting_on_little_keeps_the_pooled_threshold() -> None:
    big = [(0.9999, 3000), (0.99, 400)]
    small = [(0.99999, 900), (0.95, 10)]  # its own walk would take 0.95: 910 pairs only
    assert counted_threshold(small) == 0.95
    few_pairs = key_thresholds([big, small], [500, 500], min_known=20)
    assert few_pairs.keys[1] == few_pairs.link > 0.95
    few_known = key_thresholds([big, [(0.9999, 3000), (0.95, 2)]], [500, 19], min_known=20)
    assert few_known.keys[1] == few_known.link


_pairs = st.lists(st.tuples(st.floats(0.5, 1.0), st.integers(0, 3000)), min_size=0, max_size=12)


@settings(max_examples=200)
@given(
    keys=st.lists(st.tuples(_pairs, st.integers(0, 100)), min_size=1, max_size=5),
)
def test_the_accepted_pairs_keep_the_expected_false_share(keys) -> None:
    """A key below the pooled threshold is within the rate by its own model (its walk's
    best-first prefix, one pair at its threshold); all keys' accepted pairs together,
    counted once per key, are within twice the rate; no key is above the pooled
    threshold, and none below the floor."""
    scored = [pairs for pairs, _ in keys]
    thresholds = key_thresholds(scored, [known for _, known in keys], min_known=20)
    pooled = thresholds.link
    wrong = accepted = 0.0
    for j, pairs in enumerate(scored):
        threshold = thresholds.link_of(j)
        assert 0.9 <= threshold <= pooled <= 1.0
        w, n = _above(pairs, threshold)
        if threshold < pooled:  # its own walk's: one pair at the threshold is within it
            assert w + (1 - threshold) <= _RATE * (n + 1) + 1e-9
        small = sum(c for p, c in pairs if p >= 0.9) < 1000 or keys[j][1] < 20
        if small:
            assert threshold == pooled
        wrong, accepted = wrong + w, accepted + n
    at_pooled = 1 if pooled < 1.0 else 0  # the pooled walk's one pair at its threshold
    assert wrong + at_pooled * (1 - pooled) <= 2 * _RATE * (accepted + at_pooled) + 1e-9


def _pair(block: int, weight: float, probability: float) -> ScoredPair:
    return ScoredPair(1, 2, block, (0,), weight, probability)


def test_a_pair_in_several_blocks_is_judged_under_a_key_whose_threshold_it_clears() -> None:
    thresholds = Thresholds(link=0.97, keys=(0.96, 0.98))
    under_0 = _pair(0, 4.9, 0.968)  # clears key 0's 0.96
    under_1 = _pair(1, 5.3, 0.975)  # a higher score, below key 1's 0.98
    assert prefer_key(thresholds, under_0, under_1)
    assert not prefer_key(thresholds, under_1, under_0)
    assert thresholds.links(under_0) and not thresholds.links(under_1)
    # when both clear, or neither does, the higher weight (the first on a tie)
    assert prefer_key(thresholds, _pair(1, 6.0, 0.985), under_0)
    assert prefer_key(thresholds, _pair(1, 5.0, 0.97), _pair(0, 4.0, 0.94))
    assert not prefer_key(thresholds, _pair(1, 4.9, 0.968), under_0)
    # one threshold for every key: the best score, as before thresholds per key
    one = Thresholds(link=0.97)
    assert prefer_key(one, under_1, under_0) and not prefer_key(one, under_0, under_1)
