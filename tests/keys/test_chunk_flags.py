"""Chunks that carry source-side opt-out flags (TSC3, TSC4): one byte a record, bit 0 only."""

from __future__ import annotations

import random
import zlib
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keys.batch import BatchManifest
from keys.chunk import (
    RESEARCH_RESTRICTED,
    BatchFormatError,
    ChunkEvidence,
    TokenChunk,
    decode_chunk,
    encode_chunk,
)
from keys.derive import RecordRef, Token


def _chunk(n: int, *, flags: bytes | None, seed: int = 1, evidence: bool = False) -> TokenChunk:
    rng = random.Random(seed)
    ev = None
    if evidence:
        ev = ChunkEvidence(
            block_names=("b",),
            columns=((0, "c", "exact"),),
            blocks=[(Token(rng.randbytes(16)),) for _ in range(n)],
            counts=bytes([1] * n),
            tokens=rng.randbytes(4 * n),
        )
    return TokenChunk(
        ("nhs",),
        ("AE",),
        [RecordRef(rng.randbytes(16)) for _ in range(n)],
        [(Token(rng.randbytes(16)),) for _ in range(n)],
        [(str(i),) for i in range(n)],
        ev,
        flags,
    )


@given(st.lists(st.booleans(), min_size=0, max_size=300), st.booleans())
def test_flags_round_trip_with_and_without_evidence(restricted: list[bool], evidence: bool) -> None:
    flags = bytes(RESEARCH_RESTRICTED if r else 0 for r in restricted)
    chunk = _chunk(len(flags), flags=flags, evidence=evidence)
    data = encode_chunk(chunk)
    assert zlib.decompress(data)[:4] == (b"TSC4" if evidence else b"TSC3")
    assert decode_chunk(data) == chunk


@pytest.mark.parametrize("evidence", [False, True])
def test_a_chunk_without_flags_keeps_its_old_format(evidence: bool) -> None:
    chunk = _chunk(20, flags=None, evidence=evidence)
    data = encode_chunk(chunk)
    assert zlib.decompress(data)[:4] == (b"TSC2" if evidence else b"TSC1")
    assert decode_chunk(data).flags is None


def test_a_flag_with_another_bit_or_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="bit 0 only"):
        encode_chunk(_chunk(3, flags=b"\x00\x02\x00"))
    with pytest.raises(ValueError, match="one flag byte per record"):
        encode_chunk(_chunk(3, flags=b"\x00"))
    # A stream whose flag byte sets an unknown bit (the last byte: no payload here).
    one = TokenChunk(
        ("nhs",), (), [RecordRef(bytes(16))], [(Token(bytes(16)),)], [()], None, b"\x01"
    )
    raw = bytearray(zlib.decompress(encode_chunk(one)))
    assert raw[-1] == RESEARCH_RESTRICTED
    raw[-1] = 0x81
    with pytest.raises(BatchFormatError, match="unknown bit"):
        decode_chunk(zlib.compress(bytes(raw)))
    # Cut short: no room for the flags the header promises.
    with pytest.raises(BatchFormatError):
        decode_chunk(zlib.compress(bytes(raw[:-1])))


def test_the_manifest_carries_the_check_day_and_nothing_else_about_opt_outs() -> None:
    manifest = BatchManifest(
        batch_id="b1", dataset="reg", domain="d", key_version="v1", spec_hash="s",
        match_keys=["nhs"], payload_columns=[], record_count=0, chunk_digests=[],
        created_at="2026-12-03T00:00:00+00:00", opt_out_checked=date(2026, 11, 30),
    )  # fmt: skip
    again = BatchManifest.model_validate_json(manifest.model_dump_json())
    assert again.opt_out_checked == date(2026, 11, 30)
    assert (
        BatchManifest.model_validate_json(
            manifest.model_copy(update={"opt_out_checked": None}).model_dump_json()
        ).opt_out_checked
        is None
    )
