"""A raw block crosses to a worker as one string and comes back the same rows."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client_sdk.readers.blocks import RawBlock

_VALUE = st.text(st.characters(exclude_characters="\x00"))


@given(width=st.integers(1, 6), data=st.data())
def test_a_pickled_block_holds_the_same_rows(width: int, data: st.DataObject) -> None:
    rows = data.draw(st.lists(st.lists(_VALUE, min_size=width, max_size=width), max_size=20))
    lines = data.draw(st.lists(st.integers(1, 10**9), min_size=len(rows), max_size=len(rows)))
    block = RawBlock(width, lines, [value for row in rows for value in row])
    back = pickle.loads(pickle.dumps(block, protocol=pickle.HIGHEST_PROTOCOL))
    assert (back.width, back.lines, len(back)) == (width, lines, len(rows))
    assert [back.cells[i * width : (i + 1) * width] for i in range(len(rows))] == rows


def test_a_value_with_a_nul_character_is_never_sent_split() -> None:
    block = RawBlock(2, [2], ["1", "SMI\x00TH"])
    with pytest.raises(ValueError, match="NUL"):
        pickle.dumps(block)


def test_values_that_are_not_whole_rows_are_refused() -> None:
    with pytest.raises(ValueError, match="rows of 3"):
        RawBlock(3, [2, 3], ["1", "SMITH", "JOHN", "2"])
