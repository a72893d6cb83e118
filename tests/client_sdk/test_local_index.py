"""The local index: last write wins, a failed tokenise changes nothing, files stay private."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client_sdk.local_index import LocalIndex
from keys.derive import RecordRef

REFS = st.binary(min_size=16, max_size=16).map(RecordRef)
BATCHES = st.lists(
    st.lists(st.tuples(REFS, st.text(min_size=1, max_size=12)), max_size=30), max_size=4
)


@settings(max_examples=60, deadline=None)
@given(batches=BATCHES, strangers=st.lists(REFS, max_size=5))
def test_lookup_gives_the_last_local_id_written_for_each_reference(
    tmp_path_factory: pytest.TempPathFactory,
    batches: list[list[tuple[RecordRef, str]]],
    strangers: list[RecordRef],
) -> None:
    orgdir = tmp_path_factory.mktemp("org")
    expected: dict[RecordRef, str] = {}
    for number, batch in enumerate(batches):
        with LocalIndex.open(orgdir, "gp") as index:
            index.add([r for r, _ in batch], [i for _, i in batch], batch_id=f"b{number}")
        expected.update(batch)
    unknown = [r for r in strangers if r not in expected]
    with LocalIndex.open(orgdir, "gp") as index:
        assert index.lookup([*expected, *unknown]) == expected
        assert len(index) == len(expected)


def test_a_failure_inside_the_block_leaves_the_index_as_it_was(tmp_path: Path) -> None:
    first = [RecordRef(bytes([i]) * 16) for i in range(3)]
    with LocalIndex.open(tmp_path, "gp") as index:
        index.add(first, ["a", "b", "c"], batch_id="b1")
    before = index.path.read_bytes()
    with pytest.raises(RuntimeError), LocalIndex.open(tmp_path, "gp") as index:
        index.add([first[0], RecordRef(b"\xff" * 16)], ["changed", "new"], batch_id="b2")
        raise RuntimeError("tokenise died")
    assert index.path.read_bytes() == before
    with LocalIndex.open(tmp_path, "gp") as index:
        assert index.lookup([first[0], RecordRef(b"\xff" * 16)]) == {first[0]: "a"}


def test_a_half_written_file_from_a_killed_run_is_never_read_and_is_cleared(
    tmp_path: Path,
) -> None:
    ref = RecordRef(b"\x01" * 16)
    with LocalIndex.open(tmp_path, "gp") as index:
        index.add([ref], ["a"], batch_id="b1")
    # what a run killed while writing its merge leaves behind: a truncated copy
    stray = index.path.parent / f".{index.path.name}.x1y2.partial"
    stray.write_bytes(index.path.read_bytes()[:20])
    with LocalIndex.open(tmp_path, "gp") as index:
        assert index.lookup([ref]) == {ref: "a"}
        index.add([RecordRef(b"\x02" * 16)], ["b"], batch_id="b2")
    assert not stray.exists()
    assert [p.name for p in index.path.parent.glob("*.partial")] == []


def test_the_index_and_its_directory_are_private(tmp_path: Path) -> None:
    with LocalIndex.open(tmp_path, "gp") as index:
        index.add([RecordRef(b"\x01" * 16)], ["a"], batch_id="b1")
    assert stat.S_IMODE(os.stat(index.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(index.path.parent).st_mode) == 0o700


def test_an_empty_index_knows_nothing(tmp_path: Path) -> None:
    with LocalIndex.open(tmp_path, "gp") as index:
        assert index.lookup([RecordRef(b"\x01" * 16)]) == {}
        assert len(index) == 0
    assert not index.path.exists()
