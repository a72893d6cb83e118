"""A chunk encoded column by column decodes to the same tokens, for any number of keys."""

from __future__ import annotations

import random

import pytest

from keys.chunk import MAX_KEYS, decode_chunk, encode_chunk_columns
from keys.derive import RecordRef, Token


@pytest.mark.parametrize("n_keys", [1, 7, 8, 9, 17, MAX_KEYS])
def test_columns_round_trip_with_every_pattern_of_missing_tokens(n_keys: int) -> None:
    rng = random.Random(n_keys)
    n = 300
    refs = [RecordRef(rng.randbytes(16)) for _ in range(n)]
    columns: list[list[Token | None]] = [
        [None if rng.random() < 0.3 else Token(rng.randbytes(16)) for _ in range(n)]
        for _ in range(n_keys)
    ]
    for column in columns:  # a record with no token at all
        column[0] = None
    data = encode_chunk_columns(
        key_names=[f"k{i}" for i in range(n_keys)],
        payload_columns=[],
        refs=refs,
        token_columns=columns,
        payload=[],
    )
    chunk = decode_chunk(data)
    assert chunk.refs == refs
    assert chunk.tokens == [tuple(column[i] for column in columns) for i in range(n)]
