"""EvidenceDeriver's shortcuts give the tokens of its plain recipe.

The block cache (block values that repeat, such as dates of birth) and the cipher's
reused output buffer are speed only: each call must give what a fresh deriver without a
cache gives, whatever came before it.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from keys.derive import DomainKey, EvidenceDeriver

KEY = DomainKey(b"\x07" * 32)


def _deriver() -> EvidenceDeriver:
    return EvidenceDeriver(KEY, domain="d", version="v1", spec_hash="h", block_names=["dob"])


_values = st.lists(st.none() | st.sampled_from([b"\x00\x011", b"\x00\x022", b"\x00\x0233"]))


@given(st.lists(_values, min_size=1, max_size=4))
def test_cached_block_tokens_and_secrets_are_the_uncached_ones(
    calls: list[list[bytes | None]],
) -> None:
    cached = _deriver()
    cache: dict[bytes, tuple[bytes, bytes]] = {}
    for values in calls:
        assert cached.block_column(0, values, cache) == _deriver().block_column(0, values)


@settings(max_examples=30)
@given(st.lists(st.integers(0, 64), min_size=1, max_size=5), st.randoms(use_true_random=False))
def test_comparison_tokens_do_not_depend_on_earlier_calls(
    sizes: list[int], rng: random.Random
) -> None:
    reused = _deriver()
    for n in sizes:  # larger and smaller windows, one after the other
        secrets, digests = rng.randbytes(16 * n), rng.randbytes(16 * n)
        tokens = reused.comparison_tokens(secrets, digests)
        assert len(tokens) == 4 * n
        assert tokens == _deriver().comparison_tokens(secrets, digests)
