"""The at-rest recipe of the probabilistic evidence (keys.derive.EvidenceRekeyer).

keys/vectors/evidence_rekey.json was computed from the primitives directly (HMAC-SHA256
and AES-256 from ``cryptography``), not by the class under test, and pins the recipe.
The properties say what the recipe is for: equality of a comparison token survives only
inside one block, and nothing of the stored form is the token as the SDK sent it.
"""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from keys.derive import EvidenceRekeyer, StoredToken, Token

VECTORS = Path(__file__).resolve().parents[2] / "keys" / "vectors" / "evidence_rekey.json"


def _hex(value: str | None) -> bytes | None:
    return None if value is None else bytes.fromhex(value)


def test_the_golden_vector() -> None:
    doc = json.loads(VECTORS.read_text())
    keyer = EvidenceRekeyer(bytes.fromhex(doc["secret"]))
    blocks = [tuple(Token(b) if b else None for b in map(_hex, row)) for row in doc["blocks"]]
    stored = keyer.rekey_blocks(blocks)
    assert [[None if b is None else b.hex() for b in row] for row in stored] == doc["stored_blocks"]
    out = keyer.rekey_comparisons(
        stored,
        doc["column_blocks"],
        bytes.fromhex(doc["counts"]),
        b"".join(bytes.fromhex(t) for t in doc["tokens"]),
    )
    assert [out[i : i + 4].hex() for i in range(0, len(out), 4)] == doc["stored_tokens"]


_token = st.binary(min_size=4, max_size=4)
_block = st.binary(min_size=16, max_size=16)


@given(token=_token, first=_block, second=_block, secret=st.binary(min_size=32, max_size=32))
def test_a_comparison_token_agrees_only_inside_its_block(token, first, second, secret) -> None:
    """The same SDK token in one block stays equal; in two blocks it does not (2^-32)."""
    keyer = EvidenceRekeyer(secret)
    blocks = [(StoredToken(first),), (StoredToken(first),), (StoredToken(second),)]
    out = keyer.rekey_comparisons(blocks, [0], bytes([1, 1, 1]), token * 3)
    assert out[0:4] == out[4:8]
    if first[:12] != second[:12]:
        assert out[0:4] != out[8:12]
    assert token not in (out[0:4], out[8:12])


@given(token=_token, block=_block)
def test_the_stored_form_depends_on_the_broker_secret(token, block) -> None:
    blocks = [(StoredToken(block),)]
    one = EvidenceRekeyer(b"\x01" * 32).rekey_comparisons(blocks, [0], b"\x01", token)
    two = EvidenceRekeyer(b"\x02" * 32).rekey_comparisons(blocks, [0], b"\x01", token)
    assert one != two
