"""The probabilistic stage's byte layout: stored evidence, link bases, possible matches.

Like :mod:`~broker.store.linkage_codec` for the cascade, this module alone knows how the
probabilistic stage packs what it keeps per record (docs/keyspace.md, "Linkage"). All
integers are big-endian:

* evidence (bucket ``E``, one field per record): ``n_blocks u8 | mask u32 |`` then
  :data:`BLOCK_TOKEN_BYTES` per present block token (the stored token's first bytes),
  ``n_columns u16 | one count byte per column |`` then 4 bytes per comparison token,
  column by column (``keys.chunk.ChunkEvidence``'s order, re-keyed at rest);
* block index key (mirror only): ``j u8`` (blocking key index) + the block token;
* link basis (bucket ``B``, records linked by the probabilistic stage only):
  ``partner u32 | block u8 | probability f64 | match weight f64 | n u8 | level i8 × n``;
* possible matches (bucket ``M``, per record decided): per entry ``other u32 | block u8
  | reason u8 | probability f64 | match weight f64 | n u8 | level i8 × n``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Final

__all__ = [
    "BLOCK_TOKEN_BYTES",
    "POSSIBLE_REASONS",
    "Basis",
    "PossibleEntry",
    "block_keys",
    "column_tokens",
    "decode_basis",
    "decode_evidence",
    "decode_possible",
    "encode_basis",
    "encode_evidence",
    "encode_possible",
    "holds_token",
    "levels_vector",
    "raw_agreement",
    "raw_levels",
]

BLOCK_TOKEN_BYTES: Final = 10
"""Bytes of a stored block token kept per record (80 bits, as the token index keeps)."""
POSSIBLE_REASONS: tuple[str, ...] = ("grey", "rival", "twin", "refit")
"""Why a pair is a possible match, by stored code (append only):

* ``grey`` — its probability is at least the review threshold and below the link one;
* ``rival`` — at or above the link threshold, but linking it would chain two persons
  already linked across datasets (no chaining: the first, best pair was taken), or it
  is not likelier than its records' other candidates together (the rivals rule,
  ``broker.linkage.rules.outscores_rivals``);
* ``twin`` — at or above the link threshold, but the twin guard refused it (a person
  would hold two records of one one-record-per-person dataset) after a better pair of
  the same slice merged one of its records (a partner already joined to the candidate's
  dataset before is not scored, ``broker.linkage.scoring``);
* ``refit`` — a released probabilistic link that a refitted model scores below its link
  threshold: kept linked, never silently undone, and listed for review."""

_HEAD: Final = struct.Struct(">BI")
_U16: Final = struct.Struct(">H")
_BASIS: Final = struct.Struct(">IBddB")
_POSSIBLE: Final = struct.Struct(">IBBddB")
_TOKEN: Final = 4
_NONE: tuple[bytes, ...] = ()

Basis = tuple[int, int, float, float, tuple[int, ...]]
"""``(partner record, blocking key index, probability, match weight, agreement vector)``."""
PossibleEntry = tuple[int, int, int, float, float, tuple[int, ...]]
"""``(other record, blocking key index, reason code, probability, weight, agreement)``."""


def encode_evidence(blocks: Sequence[bytes | None], counts: bytes, tokens: bytes) -> bytes:
    """The stored evidence of one record (block tokens are cut to :data:`BLOCK_TOKEN_BYTES`)."""
    mask = 0
    present: list[bytes] = []
    for j, token in enumerate(blocks):
        if token is not None:
            mask |= 1 << j
            present.append(token[:BLOCK_TOKEN_BYTES])
    return b"".join(
        (_HEAD.pack(len(blocks), mask), *present, _U16.pack(len(counts)), counts, tokens)
    )


def decode_evidence(
    raw: bytes,
) -> tuple[tuple[bytes | None, ...], tuple[tuple[bytes, ...], ...]]:
    """One record's block tokens and, per column, its comparison tokens."""
    n_blocks, mask = _HEAD.unpack_from(raw)
    pos = _HEAD.size
    blocks: list[bytes | None] = []
    for j in range(n_blocks):
        if mask >> j & 1:
            blocks.append(raw[pos : pos + BLOCK_TOKEN_BYTES])
            pos += BLOCK_TOKEN_BYTES
        else:
            blocks.append(None)
    (n_columns,) = _U16.unpack_from(raw, pos)
    pos += _U16.size
    counts = raw[pos : pos + n_columns]
    at = pos + n_columns
    cells: list[tuple[bytes, ...]] = []
    append = cells.append
    for k in counts:  # most cells hold no token or one: those skip the general case
        if k == 0:
            append(_NONE)
        elif k == 1:
            append((raw[at : at + _TOKEN],))
            at += _TOKEN
        else:
            end = at + k * _TOKEN
            append(tuple([raw[p : p + _TOKEN] for p in range(at, end, _TOKEN)]))
            at = end
    return tuple(blocks), tuple(cells)


def _counts_at(raw: bytes) -> int:
    """Where the per-column token counts of a record's stored evidence start (read in
    place: the header's mask says how many block tokens come first)."""
    mask = raw[1] << 24 | raw[2] << 16 | raw[3] << 8 | raw[4]
    return _HEAD.size + BLOCK_TOKEN_BYTES * mask.bit_count() + _U16.size


def _n_columns(raw: bytes, counts_at: int) -> int:
    return raw[counts_at - 2] << 8 | raw[counts_at - 1]


def _column_at(raw: bytes, counts: int, column: int) -> int:
    """Where the tokens of ``column`` start in a record's stored evidence (``counts``:
    :func:`_counts_at`): the tokens before it summed from the front, or those from it on
    from the back, since the tokens end the evidence — whichever walk is shorter (the
    last blocking key's columns are near the back)."""
    n = _n_columns(raw, counts)
    if 2 * column <= n:
        at = counts + n
        c = 0
        while c < column:
            at += raw[counts + c] * _TOKEN
            c += 1
        return at
    at = len(raw)
    c = n - 1
    while c >= column:
        at -= raw[counts + c] * _TOKEN
        c -= 1
    return at


def column_tokens(raw: bytes, column: int) -> list[bytes]:
    """The comparison tokens of one column of a record's stored evidence."""
    counts = _counts_at(raw)
    at = _column_at(raw, counts, column)
    return [raw[p : p + _TOKEN] for p in range(at, at + raw[counts + column] * _TOKEN, _TOKEN)]


def holds_token(raw: bytes, column: int, token: bytes) -> bool:
    """Whether a record's stored evidence holds comparison ``token`` in ``column``."""
    counts = _counts_at(raw)
    return _shares(raw, _column_at(raw, counts, column), raw[counts + column], token, 0, 1)


def _shares(a: bytes, at_a: int, n_a: int, b: bytes, at_b: int, n_b: int) -> bool:
    """Whether the ``n_a`` tokens at ``at_a`` of ``a`` and the ``n_b`` at ``at_b`` of ``b``
    share one.

    Compared byte by byte in place: two different tokens nearly always differ in their
    first byte, so most comparisons read one byte of each and copy nothing (slicing
    every token out was most of the cost of counting).
    """
    end_a = at_a + n_a * _TOKEN
    end_b = at_b + n_b * _TOKEN
    i = at_a
    while i < end_a:
        first = a[i]
        j = at_b
        while j < end_b:
            if (
                b[j] == first
                and b[j + 1] == a[i + 1]
                and b[j + 2] == a[i + 2]
                and b[j + 3] == a[i + 3]
            ):
                return True
            j += _TOKEN
        i += _TOKEN
    return False


def raw_levels(columns: tuple[tuple[int, ...], ...], a: bytes, b: bytes) -> bytes:
    """The agreement vector of two records' stored evidence, read in place, as bytes:
    each comparison's level plus one (0 for missing), the form the pattern counts'
    fields hold it in (:mod:`broker.store.linkage_counts`).

    Nothing is decoded and nothing but the result is allocated: one cursor per record
    starts at the key's first column (:func:`_column_at`) and walks the column counts to
    each next column's tokens, both moved together column by column (a blocking key's
    columns come in increasing order, its comparisons then their levels; a column
    before the cursors places them again). A cell of one token against a cell of one
    token, the common case, is compared inline, byte by byte.
    """
    counts_a, counts_b = _counts_at(a), _counts_at(b)
    at_a = at_b = 0
    column = 1 << 30  # both cursors are at this column's tokens (none yet)
    out: list[int] = []
    for levels in columns:
        level = -1
        a_any = False
        b_any = False
        k = 0
        for wanted in levels:
            if wanted < column:
                at_a, at_b = _column_at(a, counts_a, wanted), _column_at(b, counts_b, wanted)
                column = wanted
            while column < wanted:
                at_a += a[counts_a + column] * _TOKEN
                at_b += b[counts_b + column] * _TOKEN
                column += 1
            n_a = a[counts_a + column]
            n_b = b[counts_b + column]
            if n_a:
                a_any = True
                if n_b:
                    b_any = True
                    if n_a == 1 and n_b == 1:
                        if (
                            a[at_a] == b[at_b]
                            and a[at_a + 1] == b[at_b + 1]
                            and a[at_a + 2] == b[at_b + 2]
                            and a[at_a + 3] == b[at_b + 3]
                        ):
                            level = k
                            break
                    elif _shares(a, at_a, n_a, b, at_b, n_b):
                        level = k
                        break
            elif n_b:
                b_any = True
            k += 1
        if level == -1 and a_any and b_any:
            level = len(levels)
        out.append(level + 1)
    return bytes(out)


def raw_agreement(columns: tuple[tuple[int, ...], ...], a: bytes, b: bytes) -> tuple[int, ...]:
    """``broker.matching.agreement`` of two records' stored evidence, read in place.

    The same vector (per comparison: the strongest level whose cells share a token,
    disagreement when both have a value, else missing), without decoding the columns
    the blocking key does not use: ``columns`` is its ``BlockLayout.columns``.
    """
    return levels_vector(raw_levels(columns, a, b))


def levels_vector(levels: bytes) -> tuple[int, ...]:
    """The agreement vector of :func:`raw_levels`' bytes."""
    return tuple([level - 1 for level in levels])


def block_keys(raw: bytes) -> list[bytes]:
    """The mirror's block index keys of one record's stored evidence."""
    n_blocks, mask = _HEAD.unpack_from(raw)
    pos = _HEAD.size
    keys: list[bytes] = []
    for j in range(n_blocks):
        if mask >> j & 1:
            keys.append(bytes((j,)) + raw[pos : pos + BLOCK_TOKEN_BYTES])
            pos += BLOCK_TOKEN_BYTES
    return keys


def _levels(vector: Sequence[int]) -> bytes:
    return struct.pack(f">{len(vector)}b", *vector)


def encode_basis(basis: Basis) -> bytes:
    """The stored link basis of a record the probabilistic stage linked."""
    partner, block, probability, weight, vector = basis
    return _BASIS.pack(partner, block, probability, weight, len(vector)) + _levels(vector)


def decode_basis(raw: bytes) -> Basis:
    """Inverse of :func:`encode_basis`."""
    partner, block, probability, weight, n = _BASIS.unpack_from(raw)
    vector = struct.unpack_from(f">{n}b", raw, _BASIS.size)
    return partner, block, probability, weight, tuple(vector)


def encode_possible(entries: Iterable[PossibleEntry]) -> bytes:
    """The stored possible matches of one record."""
    parts: list[bytes] = []
    for other, block, reason, probability, weight, vector in entries:
        parts.append(_POSSIBLE.pack(other, block, reason, probability, weight, len(vector)))
        parts.append(_levels(vector))
    return b"".join(parts)


def decode_possible(raw: bytes) -> list[PossibleEntry]:
    """Inverse of :func:`encode_possible`."""
    out: list[PossibleEntry] = []
    pos = 0
    while pos < len(raw):
        other, block, reason, probability, weight, n = _POSSIBLE.unpack_from(raw, pos)
        pos += _POSSIBLE.size
        vector = struct.unpack_from(f">{n}b", raw, pos)
        pos += n
        out.append((other, block, reason, probability, weight, tuple(vector)))
    return out
