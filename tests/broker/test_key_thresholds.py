"""A link threshold per blocking key (docs/probabilistic.md, The shape, point 7).

Each key's threshold is the model's own walk over that key's candidate pairs, so one
key's ambiguous blocks cannot raise another's; a key whose fit rests on little never
goes below the pooled walk; and a pair in several keys' blocks is judged under a key
whose own threshold it clears, when there is one.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.matching import ScoredPair, Thresholds, prefer_key
from broker.matching.incremental import counted_threshold, key_thresholds

_RATE = 0.001


def _share(pairs: list[tuple[float, int]], threshold: float) -> tuple[float, int]:
    """The model's expected wrong links and the pairs of the walk's best-first prefix
    down to ``threshold``: every pair above it and one at it (the walk, as
    ``model_threshold``, takes pairs one at a time; equal ones are one group of counts)."""
    above = [(p, n) for p, n in pairs if p > threshold and n > 0]
    at = 1 if threshold < 1.0 else 0
    wrong = sum((1 - p) * n for p, n in above) + at * (1 - threshold)
    return wrong, sum(n for _, n in above) + at


def test_an_ambiguous_key_does_not_raise_another_keys_threshold() -> None:
    clear = [(0.9999, 2000), (0.985, 100)]  # within the rate down to 0.985
    ambiguous = [(0.99, 1000), (0.985, 1000)]  # 1% expected wrong even at its best
    alone = key_thresholds([clear], [500], min_known=20)
    both = key_thresholds([clear, ambiguous], [500, 500], min_known=20)
    assert alone.keys == (0.985,)
    assert both.keys == (0.985, 1.0)  # the ambiguous key links nothing
    # one walk over both raised every key's threshold: what a threshold per key undoes
    assert both.link == counted_threshold(clear + ambiguous) == 0.99
    assert both.link_of(0) == 0.985 and both.link_of(1) == 1.0


def test_a_key_resting_on_little_never_goes_below_the_pooled_threshold() -> None:
    big = [(0.9999, 3000), (0.99, 400)]
    small = [(0.99999, 900), (0.95, 10)]  # its own walk would take 0.95: 910 pairs only
    assert counted_threshold(small) == 0.95
    few_pairs = key_thresholds([big, small], [500, 500], min_known=20)
    assert few_pairs.keys[1] == few_pairs.link > 0.95
    few_known = key_thresholds([big, big], [500, 19], min_known=20)
    assert few_known.keys[1] == max(counted_threshold(big), few_known.link)
    # and never below its own walk either
    strict = [(0.995, 50)]
    assert key_thresholds([big, strict], [500, 500], min_known=20).keys[1] == 1.0


_pairs = st.lists(st.tuples(st.floats(0.5, 1.0), st.integers(0, 3000)), min_size=0, max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    keys=st.lists(st.tuples(_pairs, st.integers(0, 100)), min_size=1, max_size=5),
)
def test_every_key_and_their_union_keep_the_expected_false_share(keys) -> None:
    """Each key's accepted pairs are within the rate by its own model, so are all keys'
    together counted once per key (the pooled walk's accounting), and no threshold is
    below the floor."""
    scored = [pairs for pairs, _ in keys]
    thresholds = key_thresholds(scored, [known for _, known in keys], min_known=20)
    wrong = accepted = 0.0
    for j, pairs in enumerate(scored):
        threshold = thresholds.link_of(j)
        assert 0.9 <= threshold <= 1.0
        w, n = _share(pairs, threshold)
        assert w <= _RATE * n + 1e-9
        wrong, accepted = wrong + w, accepted + n
        small = sum(c for p, c in pairs if p >= 0.9) < 1000 or keys[j][1] < 20
        if small:
            assert threshold >= thresholds.link
    assert wrong <= _RATE * accepted + 1e-9


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
