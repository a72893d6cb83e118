"""Token chunks: the binary unit an upload request carries, from the SDK to the broker.

Chunk (then one zlib stream: the references and tokens stored, the payload Huffman-coded)::

    b"TSC1"                                     magic, format version 1
    u32 n_records | u16 n_keys | u16 n_payload
    u32 len | JSON {"keys": [...], "payload": [...]}   match key and payload column names
    n_records x 16 bytes                        references
    n_records x u32                             presence mask: bit k set = token k present
    for each record, 16 bytes per present token, in match-key order
    u32 len | JSON [[value | null, ...], ...]   payload rows (absent when n_payload == 0)

All integers are big-endian. A chunk with ``n_keys == 0`` carries references only
(used to retract). Batch files (:mod:`keys.batch`) are sequences of chunks.

A chunk that carries the probabilistic stage's evidence (a spec with blocking keys and
comparisons) starts ``b"TSC2"`` instead, and between the match-key tokens and the payload
holds::

    u32 len | JSON {"blocks": [...], "columns": [[block, comparison, level], ...]}
    n_records x u32                             block presence mask: bit j = block token j
    for each record, 16 bytes per present block token, in blocking-key order
    u32 n_comparison_tokens
    n_comparison_tokens x 4 bytes               comparison tokens, record by record, then
                                                column by column
    n_records x n_columns x u8                  comparison tokens per record and column
                                                (Huffman-coded, with the payload)

A ``TSC1`` chunk is exactly what it was before; a reader takes both.

A chunk whose records carry source-side opt-out flags (docs/agreements.md, "Opt-outs")
starts ``b"TSC3"`` (otherwise as ``TSC1``) or ``b"TSC4"`` (otherwise as ``TSC2``) and,
just before the payload, holds ``n_records x u8`` flags (Huffman-coded with the payload):
bit 0 (:data:`RESEARCH_RESTRICTED`) set = the record may not be used for research; every
other bit is zero. A flag is all the chunk says: never a reason, never a list.

Every upload decodes its chunks on the broker and every linking pass decodes them again,
so this module is on the hot path and compiled with mypyc (``make setup``); it imports
nothing that mypyc cannot compile.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from operator import is_not
from typing import cast

from mypy_extensions import mypyc_attr

from keys.derive import COMPARISON_TOKEN_BYTES, TOKEN_BYTES, ComparisonToken, RecordRef, Token
from keys.errors import KeyManagementError

__all__ = [
    "MAX_EVIDENCE_COLUMNS",
    "MAX_KEYS",
    "RESEARCH_RESTRICTED",
    "BatchFormatError",
    "ChunkEvidence",
    "TokenChunk",
    "chunk_digest",
    "decode_chunk",
    "encode_chunk",
    "encode_chunk_columns",
]

MAX_KEYS = 32
MAX_EVIDENCE_COLUMNS = 1024
_MAX_BLOCKS = 32
_CHUNK_MAGIC = b"TSC1"
_EVIDENCE_MAGIC = b"TSC2"
_FLAGS_MAGIC = b"TSC3"
_EVIDENCE_FLAGS_MAGIC = b"TSC4"
_MAGICS = (_CHUNK_MAGIC, _EVIDENCE_MAGIC, _FLAGS_MAGIC, _EVIDENCE_FLAGS_MAGIC)
RESEARCH_RESTRICTED = 1
"""Bit of a record's flag byte: the record may not be used for research (opted out)."""
_FLAG_VALUES = bytes((0, RESEARCH_RESTRICTED))  # every flag byte a chunk may hold
_HEAD = struct.Struct(">IHH")
_U32 = struct.Struct(">I")


@mypyc_attr(native_class=False)
class BatchFormatError(KeyManagementError, ValueError):
    """A chunk or batch file that is truncated, corrupt or of an unknown version."""

    exit_code = 8


@mypyc_attr(native_class=False)
@dataclass(frozen=True, slots=True)
class ChunkEvidence:
    """The probabilistic stage's tokens of a chunk's records (docs/probabilistic.md).

    Kept packed, as the tokeniser makes them and the chunk carries them; :meth:`cells`
    unpacks them.

    Attributes:
        block_names: the spec's blocking key names, in order.
        columns: per comparison token column, ``(block index, comparison, level)``.
        blocks: per record, one block token (or ``None``) per blocking key.
        counts: per record, per column, how many comparison tokens it has (one byte each:
            often one; a ``one_digit`` or ``part`` level carries several; none when absent).
        tokens: every comparison token, record by record, column by column, 4 bytes each.
    """

    block_names: tuple[str, ...]
    columns: tuple[tuple[int, str, str], ...]
    blocks: list[tuple[Token | None, ...]]
    counts: bytes
    tokens: bytes

    def cells(self) -> list[tuple[tuple[ComparisonToken, ...], ...]]:
        """Per record, per column, the record's comparison tokens."""
        n_columns, width = len(self.columns), COMPARISON_TOKEN_BYTES
        counts, raw = self.counts, self.tokens
        out: list[tuple[tuple[ComparisonToken, ...], ...]] = []
        at = 0
        for start in range(0, len(counts), n_columns):
            row: list[tuple[ComparisonToken, ...]] = []
            for k in counts[start : start + n_columns]:
                end = at + k * width
                row.append(
                    tuple(ComparisonToken(raw[p : p + width]) for p in range(at, end, width))
                )
                at = end
            out.append(tuple(row))
        return out


@mypyc_attr(native_class=False)
@dataclass(frozen=True, slots=True)
class TokenChunk:
    """Up to a few tens of thousands of token records, column names included."""

    key_names: tuple[str, ...]
    payload_columns: tuple[str, ...]
    refs: list[RecordRef]
    tokens: list[tuple[Token | None, ...]]
    payload: list[tuple[str | None, ...]]
    evidence: ChunkEvidence | None = None
    flags: bytes | None = None
    """One byte per record (:data:`RESEARCH_RESTRICTED`), or ``None`` when the batch's
    source applied no opt-outs."""

    def __len__(self) -> int:
        return len(self.refs)


def encode_chunk(chunk: TokenChunk) -> bytes:
    """Binary, compressed form of ``chunk``."""
    columns: list[list[Token | None]] = [[] for _ in chunk.key_names]
    for row in chunk.tokens:
        for column, token in zip(columns, row, strict=True):
            column.append(token)
    return encode_chunk_columns(
        key_names=chunk.key_names,
        payload_columns=chunk.payload_columns,
        refs=chunk.refs,
        token_columns=columns,
        payload=chunk.payload,
        evidence=chunk.evidence,
        flags=chunk.flags,
    )


def encode_chunk_columns(
    *,
    key_names: Sequence[str],
    payload_columns: Sequence[str],
    refs: Sequence[RecordRef],
    token_columns: Sequence[Sequence[Token | None]],
    payload: Sequence[Sequence[str | None]],
    evidence: ChunkEvidence | None = None,
    flags: bytes | None = None,
) -> bytes:
    """The bytes :func:`encode_chunk` gives, from one token column per match key.

    ``token_columns[k][i]`` is record ``i``'s token for match key ``k`` (or ``None``); a
    tokeniser that works key by key hands its columns over without building rows.
    ``evidence`` (one entry per record) makes a ``TSC2`` chunk; ``flags`` (one byte per
    record) a ``TSC3`` or ``TSC4`` one.
    """
    n, n_keys, n_payload = len(refs), len(key_names), len(payload_columns)
    if n_keys > MAX_KEYS:
        raise BatchFormatError(f"at most {MAX_KEYS} match keys per chunk")
    if len(token_columns) != n_keys or any(len(c) != n for c in token_columns):
        raise ValueError("one token column per match key, one token per record")
    names = json.dumps({"keys": tuple(key_names), "payload": tuple(payload_columns)}).encode()
    if flags is not None and (len(flags) != n or flags.translate(None, _FLAG_VALUES)):
        raise ValueError("one flag byte per record, bit 0 only")
    magic = _MAGICS[(evidence is not None) + 2 * (flags is not None)]
    parts: list[bytes] = [magic, _HEAD.pack(n, n_keys, n_payload), _U32.pack(len(names))]
    parts.append(names)
    parts.append(b"".join(refs))
    if n_keys:
        parts.append(_presence_masks(n, token_columns))
        # each record's present tokens, in match-key order (a token is never empty)
        parts.append(b"".join(filter(None, chain.from_iterable(zip(*token_columns, strict=True)))))
    else:
        parts += [b"", b""]
    counts = b""
    if evidence is not None:
        evidence_parts, counts = _encode_evidence(n, evidence)
        parts += evidence_parts
    rows = b""
    if n_payload:
        text = json.dumps(list(payload), ensure_ascii=False, separators=(",", ":")).encode()
        rows = _U32.pack(len(text)) + text
    return _deflate(b"".join(parts), counts + (flags or b"") + rows)


def _encode_evidence(n: int, evidence: ChunkEvidence) -> tuple[list[bytes], bytes]:
    """The evidence section's stored parts, and its per-column counts (Huffman-coded)."""
    n_blocks, n_columns = len(evidence.block_names), len(evidence.columns)
    if n_blocks > _MAX_BLOCKS or n_columns > MAX_EVIDENCE_COLUMNS:
        raise BatchFormatError("too many blocking keys or comparison columns per chunk")
    if len(evidence.blocks) != n or any(len(row) != n_blocks for row in evidence.blocks):
        raise ValueError("one block token per blocking key and record")
    head = json.dumps({"blocks": evidence.block_names, "columns": evidence.columns}).encode()
    block_columns = [[row[j] for row in evidence.blocks] for j in range(n_blocks)]
    counts = evidence.counts
    if len(counts) != n * n_columns:
        raise ValueError("one count per record and column")
    n_tokens = sum(counts)  # taken once: a pass over every count is some 0.2 µs a record
    if len(evidence.tokens) != COMPARISON_TOKEN_BYTES * n_tokens:
        raise ValueError("the comparison tokens do not match their counts")
    stored = [
        _U32.pack(len(head)),
        head,
        _presence_masks(n, block_columns) if n_blocks else b"\0\0\0\0" * n,
        b"".join(filter(None, chain.from_iterable(evidence.blocks))),
        _U32.pack(n_tokens),
        evidence.tokens,
    ]
    return stored, counts


_ZLIB_HEADER = b"\x78\x01"  # RFC 1950: deflate, 32 KiB window, fastest; a multiple of 31


def _deflate(random_part: bytes, text_part: bytes) -> bytes:
    """One zlib stream (RFC 1950) of ``random_part + text_part`` that any zlib reader inflates.

    References and tokens are random bytes that no coding can shorten, so they go into
    *stored* deflate blocks (a copy); only the payload text is Huffman-coded. Each part is
    deflated by zlib itself; a full flush ends the first part's blocks byte-aligned and not
    final, so the two raw deflate streams concatenate into one. Against Huffman-coding the
    whole chunk this saves about 1 µs a record at 2-3% more bytes (the presence masks).
    """
    stored = zlib.compressobj(0, zlib.DEFLATED, -15)
    coded = zlib.compressobj(1, zlib.DEFLATED, -15, 9, zlib.Z_HUFFMAN_ONLY)
    checksum = zlib.adler32(text_part, zlib.adler32(random_part))
    return b"".join(
        (
            _ZLIB_HEADER,
            stored.compress(random_part),
            stored.flush(zlib.Z_FULL_FLUSH),
            coded.compress(text_part),
            coded.flush(),
            _U32.pack(checksum),
        )
    )


def _presence_masks(n: int, token_columns: Sequence[Sequence[Token | None]]) -> bytes:
    """Each record's big-endian u32 mask of present tokens (bit ``k`` for match key ``k``).

    Worked a byte of the mask at a time in C: each key's column becomes one 0/1 byte per
    record, read as one big integer, shifted to its bit and added (a byte never carries).
    """
    out = bytearray(4 * n)
    for group in range(0, len(token_columns), 8):
        combined = 0
        for bit, column in enumerate(token_columns[group : group + 8]):
            present = bytes(map(is_not, column, repeat(None)))
            combined |= int.from_bytes(present, "big") << bit
        out[3 - group // 8 :: 4] = combined.to_bytes(n, "big")
    return bytes(out)


_PREFIX_BYTES = 4 + _HEAD.size + _U32.size  # magic, counts, length of the column names
_MAX_NAMES_BYTES = 1024 * 1024
_PAYLOAD_INFLATION = 16
"""How many times its compressed size a chunk's payload text may inflate to: the encoder
Huffman-codes it, which shrinks text at most eightfold; twice that leaves room."""


def _inflate(data: bytes, *, max_records: int) -> bytes:
    """The chunk's bytes, inflated no further than its header allows.

    The first bytes give the record, key and payload column counts and the length of the
    column names; from them the size of references, masks and tokens is known exactly,
    and the payload text may take at most :data:`_PAYLOAD_INFLATION` times the chunk's
    compressed size. A stream that inflates beyond that (a zlib bomb) is refused as soon
    as it passes the bound, having used no more memory than the bound.
    """
    inflater = zlib.decompressobj()
    head = inflater.decompress(data, _PREFIX_BYTES)
    if len(head) < _PREFIX_BYTES or head[:4] not in _MAGICS:
        raise BatchFormatError("not a token chunk, or an unknown chunk version")
    n, n_keys, n_payload = _HEAD.unpack_from(head, 4)
    (names_len,) = _U32.unpack_from(head, 4 + _HEAD.size)
    if n > max_records or n_keys > MAX_KEYS or names_len > _MAX_NAMES_BYTES:
        raise BatchFormatError("chunk too large")
    bound = _PREFIX_BYTES + names_len + n * TOKEN_BYTES
    if n_keys:
        bound += n * (4 + n_keys * TOKEN_BYTES)
    if n_payload:
        bound += _U32.size + _PAYLOAD_INFLATION * len(data)
    if head[:4] in (_FLAGS_MAGIC, _EVIDENCE_FLAGS_MAGIC):
        bound += n
    if head[:4] in (_EVIDENCE_MAGIC, _EVIDENCE_FLAGS_MAGIC):
        # the evidence's tokens are stored (never smaller than they are) and its counts
        # Huffman-coded like the payload text
        bound += len(data) + _PAYLOAD_INFLATION * len(data)
    rest = inflater.decompress(inflater.unconsumed_tail, bound - _PREFIX_BYTES + 1)
    if len(rest) > bound - _PREFIX_BYTES or inflater.unconsumed_tail:
        raise BatchFormatError("chunk inflates beyond what its header declares")
    if not inflater.eof:
        raise BatchFormatError("corrupt token chunk: the compressed stream is truncated")
    return head + rest


def decode_chunk(data: bytes, *, max_records: int = 1_000_000) -> TokenChunk:
    """Parse a chunk; raises :class:`BatchFormatError` on anything malformed."""
    try:
        raw = _inflate(data, max_records=max_records)
        magic = raw[:4]
        n, n_keys, n_payload = _HEAD.unpack_from(raw, 4)
        pos = 4 + _HEAD.size
        (names_len,) = _U32.unpack_from(raw, pos)
        pos += 4
        names = json.loads(raw[pos : pos + names_len])
        pos += names_len
        key_names = tuple(str(x) for x in names["keys"])
        payload_columns = tuple(str(x) for x in names["payload"])
        if len(key_names) != n_keys or len(payload_columns) != n_payload:
            raise BatchFormatError("chunk header disagrees with its column names")
        refs = [
            RecordRef(raw[pos + i * TOKEN_BYTES : pos + (i + 1) * TOKEN_BYTES]) for i in range(n)
        ]
        pos += n * TOKEN_BYTES
        token_rows: list[tuple[bytes | None, ...]] = []
        if n_keys:
            masks = struct.unpack_from(f">{n}I", raw, pos)
            pos += 4 * n
            every = (1 << n_keys) - 1
            for mask in masks:
                if mask == every:  # the usual record: every token present
                    end = pos + n_keys * TOKEN_BYTES
                    cuts = [raw[p : p + TOKEN_BYTES] for p in range(pos, end, TOKEN_BYTES)]
                    token_rows.append(tuple(cuts))
                    pos = end
                    continue
                row: list[bytes | None] = []
                for k in range(n_keys):
                    if mask >> k & 1:
                        row.append(raw[pos : pos + TOKEN_BYTES])
                        pos += TOKEN_BYTES
                    else:
                        row.append(None)
                token_rows.append(tuple(row))
        else:
            token_rows = [()] * n
        tokens = cast(list[tuple[Token | None, ...]], token_rows)
        evidence: ChunkEvidence | None = None
        if magic in (_EVIDENCE_MAGIC, _EVIDENCE_FLAGS_MAGIC):
            evidence, pos = _decode_evidence(raw, pos, n)
        flags: bytes | None = None
        if magic in (_FLAGS_MAGIC, _EVIDENCE_FLAGS_MAGIC):
            flags = raw[pos : pos + n]
            pos += n
            if len(flags) != n or flags.translate(None, _FLAG_VALUES):
                raise BatchFormatError("chunk flags are truncated or set an unknown bit")
        payload: list[tuple[str | None, ...]] = [()] * n
        if n_payload:
            (rows_len,) = _U32.unpack_from(raw, pos)
            pos += 4
            rows = json.loads(raw[pos : pos + rows_len])
            pos += rows_len
            if len(rows) != n or any(len(r) != n_payload for r in rows):
                raise BatchFormatError("chunk payload does not match its records")
            payload = [tuple(None if v is None else str(v) for v in r) for r in rows]
        if pos != len(raw) or any(len(r) != TOKEN_BYTES for r in refs):
            raise BatchFormatError("chunk length does not match its header")
    except BatchFormatError:
        raise
    except (zlib.error, struct.error, ValueError, KeyError, TypeError) as exc:
        raise BatchFormatError("corrupt token chunk") from exc
    return TokenChunk(key_names, payload_columns, refs, tokens, payload, evidence, flags)


def _decode_evidence(raw: bytes, pos: int, n: int) -> tuple[ChunkEvidence, int]:
    """The evidence section at ``pos`` of a ``TSC2`` chunk, and the position after it."""
    (head_len,) = _U32.unpack_from(raw, pos)
    pos += 4
    head = json.loads(raw[pos : pos + head_len])
    pos += head_len
    block_names = tuple(str(x) for x in head["blocks"])
    columns = tuple((int(b), str(c), str(lv)) for b, c, lv in head["columns"])
    n_blocks, n_columns = len(block_names), len(columns)
    if n_blocks > _MAX_BLOCKS or n_columns > MAX_EVIDENCE_COLUMNS:
        raise BatchFormatError("chunk too large")
    if any(not 0 <= b < n_blocks for b, _, _ in columns):
        raise BatchFormatError("chunk evidence names a blocking key it does not have")
    masks = struct.unpack_from(f">{n}I", raw, pos)
    pos += 4 * n
    blocks: list[tuple[Token | None, ...]] = []
    for mask in masks:
        if mask >> n_blocks:
            raise BatchFormatError("chunk evidence mask names a blocking key it does not have")
        row: list[Token | None] = []
        for j in range(n_blocks):
            if mask >> j & 1:
                row.append(Token(raw[pos : pos + TOKEN_BYTES]))
                pos += TOKEN_BYTES
            else:
                row.append(None)
        blocks.append(tuple(row))
    (n_tokens,) = _U32.unpack_from(raw, pos)
    pos += 4
    tokens_at = pos
    pos += n_tokens * COMPARISON_TOKEN_BYTES
    counts = raw[pos : pos + n * n_columns]
    pos += n * n_columns
    if len(counts) != n * n_columns or sum(counts) != n_tokens:
        raise BatchFormatError("chunk evidence counts do not match its tokens")
    tokens = raw[tokens_at : tokens_at + n_tokens * COMPARISON_TOKEN_BYTES]
    return ChunkEvidence(block_names, columns, blocks, counts, tokens), pos


def chunk_digest(data: bytes) -> str:
    """SHA-256 (hex) of a chunk's bytes: its identity for idempotent upload."""
    return hashlib.sha256(data).hexdigest()
