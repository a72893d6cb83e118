"""The linkage's byte layout: index keys, reference keys, holders, records, persons, conflicts.

This module alone knows how the linkage packs what it holds; the engine
(:mod:`broker.linkage`) and the rest of the store go through its names and functions.
All integers are big-endian (docs/keyspace.md, "Linkage"):

* index key (mirror only): ``k`` (1 byte, match key index) + the first
  :data:`INDEX_TOKEN_BYTES` bytes of the stored token;
* reference key (mirror only): ``dsn u16 + ref`` (the whole reference: references are
  chosen by the uploader, so a prefix could collide);
* holders (value in the mirror's token index): one :data:`MEMBER` ``(rid u32, dsn u16)``
  per record holding the token, in record number order;
* record: ``dsn u16 | pid u32 | bseq u32 | link_key u8 | conflict kinds u8 | ref 16 |``
  ``n u8 | mask u32 |`` then :data:`INDEX_TOKEN_BYTES` per present token;
* person: one :data:`MEMBER` per member, in the order they joined;
* conflicts: ``(kind u8, strong key u8, weak key u8, other rid u32)`` per conflict;
* per-id sections of the write script: ``(id u32, length u32)`` then the value;
* payload: its values as a JSON array; a record whose batch applied opt-outs at the source
  prefixes ``0 u8 | flags u8 | check day u32`` (bit 0 of flags: research-restricted; the
  day of the batch's national opt-out check, days since 1970-01-01, 0 for none). JSON
  never starts with a zero byte, so the two forms cannot be confused.

It knows formats only: what a value means to linkage (a key that started a person, a
kind of conflict) is the rules' business (:mod:`broker.linkage.rules`).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final

__all__ = [
    "CHECK_DAY_EPOCH",
    "CONFLICT_CODES",
    "INDEX_KEY_BYTES",
    "INDEX_TOKEN_BYTES",
    "MEMBER",
    "MEMBER_BYTES",
    "REF_PREFIX_BYTES",
    "StoredRecord",
    "bucket_name",
    "bucket_number",
    "decode_conflicts",
    "decode_members",
    "decode_payload",
    "encode_conflicts",
    "encode_members",
    "encode_payload",
    "encode_sections",
    "held_by_dataset",
    "holder_at",
    "holder_count",
    "index_key",
    "index_keys",
    "index_tokens",
    "iter_holders",
    "join_id",
    "last_holder_rid",
    "member_dsn",
    "member_dsns",
    "member_rid",
    "next_id",
    "only_other_holder",
    "pack_member",
    "record_index",
    "ref_prefix",
    "split_id",
    "stored_dsn",
    "stored_pid",
    "with_member",
    "without_member",
]

INDEX_TOKEN_BYTES: Final = 10
"""Bytes of a stored token the index keeps (80 bits)."""
INDEX_KEY_BYTES: Final = 1 + INDEX_TOKEN_BYTES
"""An index key: the match key's index byte, then the index token."""
MEMBER: Final = struct.Struct(">IH")
"""One token holder or person member: ``rid u32, dsn u16``."""
MEMBER_BYTES: Final = MEMBER.size
"""Bytes of one :data:`MEMBER`."""
REF_PREFIX_BYTES: Final = 2
"""Bytes before the reference in a reference key (the dataset number)."""
CONFLICT_CODES: tuple[str, ...] = ("key", "twin", "merge")
"""The name each stored conflict kind code is listed under (append only: stored conflicts
keep their code). The rules define the kinds (:data:`broker.linkage.rules.CONFLICT_KINDS`);
a test holds the two equal, so this table only names what is already stored."""

_RECORD: Final = struct.Struct(">HIIBB16sBI")
_CONFLICT: Final = struct.Struct(">BBBI")
_U32: Final = struct.Struct(">I")
_DSN: Final = struct.Struct(">H")
_SECTION: Final = struct.Struct(">II")
CHECK_DAY_EPOCH: Final = date(1970, 1, 1)
"""Day 0 of a stored opt-out check day."""
_SOURCE_OPT_OUT: Final = struct.Struct(">BBI")  # mark (0), flags, check day
_RESTRICTED_BIT: Final = 1
_PID_OFFSET: Final = 2  # the person number follows the dataset number in a record
_MEMBER_DSN_OFFSET: Final = 4  # a member's dataset number follows its record number
_KEY_BYTES: Final = [bytes((k,)) for k in range(256)]


# Index keys and reference keys -------------------------------------------------------------


def index_tokens(stored: Sequence[bytes | None], width: int) -> tuple[bytes | None, ...]:
    """The index tokens of a record's stored tokens: the first ``width``, cut to size.

    Missing trailing tokens are ``None``, so the tuple always has ``width`` entries.
    """
    tokens = tuple([None if t is None else t[:INDEX_TOKEN_BYTES] for t in stored[:width]])
    if len(tokens) < width:
        tokens += (None,) * (width - len(tokens))
    return tokens


def index_key(k: int, token: bytes) -> bytes:
    """The token index's key for index token ``token`` of match key ``k``."""
    return _KEY_BYTES[k] + token


def index_keys(tokens: Iterable[bytes | None]) -> list[bytes]:
    """The index keys of a record's present tokens, strongest key first."""
    key_bytes = _KEY_BYTES
    return [key_bytes[k] + t for k, t in enumerate(tokens) if t is not None]


def ref_prefix(dsn: int) -> bytes:
    """What every reference key of dataset ``dsn`` starts with (build it once per call)."""
    return _DSN.pack(dsn)


# Holders and members -----------------------------------------------------------------------


def pack_member(rid: int, dsn: int) -> bytes:
    """One holder or member."""
    return MEMBER.pack(rid, dsn)


def holder_count(holders: bytes) -> int:
    """How many records ``holders`` lists."""
    return len(holders) // MEMBER_BYTES


def holder_at(holders: bytes, i: int) -> tuple[int, int]:
    """The ``i``-th ``(rid, dsn)`` of ``holders``."""
    rid, dsn = MEMBER.unpack_from(holders, i * MEMBER_BYTES)
    return rid, dsn


def _u32_at(data: bytes, at: int) -> int:
    """The big-endian u32 at ``at`` (read in place: no struct call, nothing allocated)."""
    return data[at] << 24 | data[at + 1] << 16 | data[at + 2] << 8 | data[at + 3]


def member_rid(data: bytes, at: int) -> int:
    """The record number of the member at byte ``at`` of ``data`` (holders or a person's
    members), read in place."""
    return _u32_at(data, at)


def member_dsn(data: bytes, at: int) -> int:
    """The dataset number of the member at byte ``at`` of ``data``, read in place."""
    return data[at + _MEMBER_DSN_OFFSET] << 8 | data[at + _MEMBER_DSN_OFFSET + 1]


def only_other_holder(holders: bytes, rid: int) -> tuple[int, int] | None:
    """The one ``(rid, dsn)`` of ``holders`` other than record ``rid``: ``(0, 0)`` when
    ``rid`` is the only holder, ``None`` when there are several others (or none at all).

    The linkage asks this of nearly every token, so it reads the bytes in place.
    """
    n = len(holders)
    if n == MEMBER_BYTES:
        if member_rid(holders, 0) == rid:
            return 0, 0
        return member_rid(holders, 0), member_dsn(holders, 0)
    if n == 2 * MEMBER_BYTES:
        if member_rid(holders, 0) == rid:
            return member_rid(holders, MEMBER_BYTES), member_dsn(holders, MEMBER_BYTES)
        if member_rid(holders, MEMBER_BYTES) == rid:
            return member_rid(holders, 0), member_dsn(holders, 0)
    return None


def held_by_dataset(holders: bytes, dsn: int) -> bool:
    """Whether a record of dataset ``dsn`` is among ``holders`` (or a person's members)."""
    n = len(holders)
    if n == MEMBER_BYTES:
        return member_dsn(holders, 0) == dsn
    at = 0
    while at < n:
        if member_dsn(holders, at) == dsn:
            return True
        at += MEMBER_BYTES
    return False


def iter_holders(holders: bytes) -> Iterator[tuple[int, int]]:
    """Every ``(rid, dsn)`` of ``holders`` (or of a person's members), in order."""
    return MEMBER.iter_unpack(holders)


def last_holder_rid(holders: bytes) -> int:
    """The record number of the last of ``holders`` (they must not be empty)."""
    return int(MEMBER.unpack_from(holders, len(holders) - MEMBER_BYTES)[0])


def member_dsns(members: bytes) -> tuple[int, ...]:
    """The dataset number of each member, in order."""
    return tuple(d for _, d in MEMBER.iter_unpack(members))


def with_member(holders: bytes, rid: int, dsn: int) -> bytes:
    """``holders`` with record ``rid`` of ``dsn`` added, kept in record number order.

    The order is the one the linking worker's mirror rebuilds from the records, so a
    decision never depends on whether the worker read the scope afresh.
    """
    member = MEMBER.pack(rid, dsn)
    if not holders or last_holder_rid(holders) < rid:
        return holders + member
    return encode_members(sorted([*MEMBER.iter_unpack(holders), (rid, dsn)]))


def without_member(holders: bytes, rid: int) -> list[tuple[int, int]]:
    """The ``(rid, dsn)`` of ``holders`` other than record ``rid``, in order."""
    return [h for h in MEMBER.iter_unpack(holders) if h[0] != rid]


def encode_members(members: Iterable[tuple[int, int]]) -> bytes:
    """Packed ``(rid, dsn)`` pairs (person members, or token holders)."""
    return b"".join(MEMBER.pack(rid, dsn) for rid, dsn in members)


def decode_members(data: bytes) -> list[tuple[int, int]]:
    """Inverse of :func:`encode_members`."""
    return list(MEMBER.iter_unpack(data)) if data else []


# Conflicts, ids and write sections ---------------------------------------------------------


def encode_conflicts(conflicts: Iterable[tuple[int, int, int, int]]) -> bytes:
    """Packed ``(kind, strong key, weak key, other rid)`` conflicts."""
    return b"".join(_CONFLICT.pack(*c) for c in conflicts)


def decode_conflicts(data: bytes) -> list[tuple[int, int, int, int]]:
    """Inverse of :func:`encode_conflicts`."""
    return list(_CONFLICT.iter_unpack(data)) if data else []


def encode_payload(
    payload: Sequence[str | None], *, restricted: bool = False, checked_day: int = 0
) -> bytes:
    """The stored form of a record's payload values (compact JSON, UTF-8), with its
    source-side opt-out facts when its batch gave any (see the module's docstring)."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    if not restricted and not checked_day:
        return text
    return _SOURCE_OPT_OUT.pack(0, _RESTRICTED_BIT if restricted else 0, checked_day) + text


def decode_payload(data: bytes) -> tuple[tuple[str | None, ...], bool, int]:
    """Inverse of :func:`encode_payload`: the values, research-restricted, the check day."""
    if data[:1] == b"\0":
        _, flags, day = _SOURCE_OPT_OUT.unpack_from(data)
        values = json.loads(data[_SOURCE_OPT_OUT.size :])
        return tuple(values), bool(flags & _RESTRICTED_BIT), int(day)
    return tuple(json.loads(data)), False, 0


def next_id(last: int) -> int:
    """The id after ``last``: ids never end in a byte of 128 or more (128 per bucket)."""
    following = last + 1
    if following & 0xFF >= 128:
        following = (following | 0xFF) + 1
    return following


def split_id(ident: int) -> tuple[bytes, bytes]:
    """A record or person number as ``(bucket, field)``: its first three bytes, its last."""
    packed = _U32.pack(ident)
    return packed[:3], packed[3:]


def bucket_number(ident: int) -> int:
    """The number of the bucket holding id ``ident`` (its bytes but the last)."""
    return ident >> 8


def bucket_name(bucket: int) -> bytes:
    """The key suffix of bucket number ``bucket`` (the three bytes :func:`split_id` gives)."""
    return _U32.pack(bucket)[1:]


def join_id(bucket: int, field_name: bytes) -> int:
    """Inverse of :func:`split_id`, from a bucket number and a field."""
    return (bucket << 8) | field_name[0]


def encode_sections(items: dict[int, bytes | None]) -> bytes:
    """Per-id changes in id order, so the write script writes each bucket with one command.

    An empty value (or ``None``) deletes the field.
    """
    parts: list[bytes] = []
    for ident, value in sorted(items.items()):
        data = value or b""
        parts.append(_SECTION.pack(ident, len(data)))
        parts.append(data)
    return b"".join(parts)


# Records -----------------------------------------------------------------------------------


def stored_pid(record: bytes) -> int:
    """The person number inside a stored record (0 while it waits to be re-linked)."""
    return _u32_at(record, _PID_OFFSET)


def stored_dsn(record: bytes) -> int:
    """The dataset number inside a stored record (read in place)."""
    return record[0] << 8 | record[1]


def record_index(rid: int, record: bytes) -> tuple[bytes, bytes, list[bytes]]:
    """What the mirror indexes of a stored record: its member, reference key, index keys."""
    dsn, _, _, _, _, ref, n, mask = _RECORD.unpack_from(record)
    key_bytes = _KEY_BYTES
    keys: list[bytes] = []
    pos = _RECORD.size
    for k in range(n):
        if mask >> k & 1:
            keys.append(key_bytes[k] + record[pos : pos + INDEX_TOKEN_BYTES])
            pos += INDEX_TOKEN_BYTES
    return MEMBER.pack(rid, dsn), record[:REF_PREFIX_BYTES] + ref, keys


@dataclass(slots=True)
class StoredRecord:
    """The engine's working copy of one record.

    Attributes:
        rid: record number.
        dsn: dataset number.
        pid: person number (0 while the record waits to be re-linked).
        bseq: number of the last batch that carried the record.
        link_key: match key through which it joined its person (the rules name the
            value of a record that started its person).
        cflags: bit ``c`` set when a conflict of kind code ``c`` is recorded.
        ref: its reference.
        tokens: index tokens per match key, ``None`` where absent.
    """

    rid: int
    dsn: int
    pid: int
    bseq: int
    link_key: int
    cflags: int
    ref: bytes
    tokens: tuple[bytes | None, ...]

    def encode(self) -> bytes:
        """The stored form."""
        mask = 0
        present: list[bytes] = []
        for k, token in enumerate(self.tokens):
            if token is not None:
                mask |= 1 << k
                present.append(token)
        head = _RECORD.pack(
            self.dsn,
            self.pid,
            self.bseq,
            self.link_key,
            self.cflags,
            self.ref,
            len(self.tokens),
            mask,
        )
        return head + b"".join(present)

    def ref_key(self) -> bytes:
        """Its reference key (see :func:`ref_prefix`)."""
        return _DSN.pack(self.dsn) + self.ref

    @classmethod
    def decode(cls, rid: int, data: bytes) -> StoredRecord:
        """Parse the stored form."""
        dsn, pid, bseq, link_key, cflags, ref, n, mask = _RECORD.unpack_from(data)
        pos = _RECORD.size
        tokens: list[bytes | None] = []
        for k in range(n):
            if mask >> k & 1:
                tokens.append(data[pos : pos + INDEX_TOKEN_BYTES])
                pos += INDEX_TOKEN_BYTES
            else:
                tokens.append(None)
        return cls(rid, dsn, pid, bseq, link_key, cflags, ref, tuple(tokens))
