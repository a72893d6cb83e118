"""The linkage's byte layout (broker/store/linkage_codec.py): what is packed reads back."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from broker.store.linkage_codec import (
    INDEX_KEY_BYTES,
    INDEX_TOKEN_BYTES,
    StoredRecord,
    bucket_name,
    bucket_number,
    decode_conflicts,
    decode_members,
    encode_conflicts,
    encode_members,
    held_by_dataset,
    index_keys,
    index_tokens,
    iter_holders,
    join_id,
    next_id,
    only_other_holder,
    record_index,
    ref_prefix,
    split_id,
    stored_dsn,
    stored_pid,
    with_member,
    without_member,
)

_token = st.binary(min_size=INDEX_TOKEN_BYTES, max_size=INDEX_TOKEN_BYTES)
_tokens = st.lists(st.one_of(st.none(), _token), min_size=1, max_size=8).map(tuple)
_rid = st.integers(1, 2**32 - 1)
_dsn = st.integers(0, 2**16 - 1)
_members = st.lists(st.tuples(_rid, _dsn), unique_by=lambda m: m[0], max_size=6)


@given(
    rid=_rid,
    dsn=_dsn,
    pid=st.integers(0, 2**32 - 1),
    bseq=st.integers(0, 2**32 - 1),
    link_key=st.integers(0, 255),
    cflags=st.integers(0, 255),
    ref=st.binary(min_size=16, max_size=16),
    tokens=_tokens,
)
def test_a_record_reads_back_and_is_indexed_by_its_own_tokens(
    rid, dsn, pid, bseq, link_key, cflags, ref, tokens
) -> None:
    record = StoredRecord(rid, dsn, pid, bseq, link_key, cflags, ref, tokens)
    raw = record.encode()
    assert StoredRecord.decode(rid, raw) == record
    assert (stored_dsn(raw), stored_pid(raw)) == (dsn, pid)
    member, ref_key, keys = record_index(rid, raw)
    assert decode_members(member) == [(rid, dsn)]
    assert ref_key == record.ref_key() == ref_prefix(dsn) + ref
    assert keys == index_keys(tokens)
    assert all(len(key) == INDEX_KEY_BYTES for key in keys)


@given(
    stored=st.lists(st.one_of(st.none(), st.binary(min_size=16, max_size=16))),
    width=st.integers(0, 8),
)
def test_index_tokens_have_the_dataset_width(stored, width) -> None:
    tokens = index_tokens(stored, width)
    assert len(tokens) == width
    for k, token in enumerate(tokens):
        given_token = stored[k] if k < len(stored) else None
        assert token == (None if given_token is None else given_token[:INDEX_TOKEN_BYTES])


@given(members=_members, rid=_rid, dsn=_dsn)
def test_holders_stay_in_record_order(members, rid, dsn) -> None:
    holders = encode_members(sorted(m for m in members if m[0] != rid))
    added = with_member(holders, rid, dsn)
    assert list(iter_holders(added)) == sorted([*decode_members(holders), (rid, dsn)])
    assert without_member(added, rid) == decode_members(holders)
    assert held_by_dataset(added, dsn)


@given(members=_members, rid=_rid)
def test_only_other_holder(members, rid) -> None:
    holders = encode_members(members)
    others = [m for m in members if m[0] != rid]
    found = only_other_holder(holders, rid)
    if len(members) <= 2 and len(others) == 1:
        assert found == others[0]
    elif len(members) == 1 and not others:
        assert found == (0, 0)
    else:
        assert found is None


@given(conflicts=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 7), st.integers(0, 7), _rid)))
def test_conflicts_read_back(conflicts) -> None:
    assert decode_conflicts(encode_conflicts(conflicts)) == conflicts


@given(last=st.integers(0, 2**31))
def test_ids_fill_buckets_of_128_and_split_back(last) -> None:
    ident = next_id(last)
    assert ident > last
    assert ident & 0xFF < 128
    bucket, field_name = split_id(ident)
    assert bucket == bucket_name(bucket_number(ident))
    assert join_id(bucket_number(ident), field_name) == ident
