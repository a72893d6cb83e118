"""Normalised records → token chunks: the last step before anything leaves the organisation.

For each record, one token per match key of the linkage spec whose fields are *all*
present (a missing, invalid or placeholder value is ``None`` after normalisation, and a
key with a ``None`` field, or a field a transform empties, gets no token; the parts of an
unordered group are joined in sorted order, so either order gives one token), plus an opaque
reference to the local record id and the mapping's payload columns. Tokens come from
:class:`keys.derive.TokenDeriver` and references from :class:`keys.derive.ReferenceDeriver`;
this module picks no algorithm or label. The exact recipe is in docs/token-format.md.

A spec with blocking keys and comparisons adds each record's *evidence*: one block token
per blocking key whose fields are all present, and under each such block one short
comparison token per value of each comparison level (:mod:`client_sdk.evidence`,
docs/probabilistic.md).

Work is done in blocks of rows (one block = one chunk of the batch), so ``workers > 1``
spreads blocks over processes: each worker derives the tokens and references of a block
and encodes its chunk, and the parent writes chunks in input order
(:mod:`client_sdk.tokenise_batch`).
"""

from __future__ import annotations

import gc
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from mypy_extensions import mypyc_attr

from client_sdk.evidence import Evidence, EvidenceEncoder
from client_sdk.normalise.placeholders import rests_on_day_of_birth
from client_sdk.normalise.transforms import TRANSFORM_FUNCTIONS
from client_sdk.record import NormalisedRecord
from keys.chunk import RESEARCH_RESTRICTED, ChunkEvidence, TokenChunk, encode_chunk_columns
from keys.derive import (
    DomainKey,
    RecordRef,
    ReferenceDeriver,
    Token,
    TokenDeriver,
    encode_value,
    encode_values,
)
from keys.spec import KeyField, LinkageSpec, UnorderedFields

__all__ = [
    "CHUNK_RECORDS",
    "EVIDENCE_CHUNK_RECORDS",
    "EncodedChunk",
    "TokeniseParams",
    "Tokeniser",
]

CHUNK_RECORDS = 20_000
"""Records per chunk (and per block of work handed to a worker) under a spec of match
keys alone."""
EVIDENCE_CHUNK_RECORDS = 5_000
"""Records per chunk under a spec with the probabilistic evidence. Each record then
carries some 600–1,000 bytes of block and comparison tokens, which are random and do not
compress (longer names give more ``one_edit`` tokens), so a chunk of 20,000 comes near the
broker's default limit of 16 MiB a request (``max_chunk_bytes``) and past it on some
extracts; 5,000 keeps a chunk near a quarter of it."""

_UNIQUE_FIELDS = frozenset({"nhs_number", "other_id", "address_line"})
_CACHE_SIZE = 1 << 17

# A row as the workers see it: (local id, payload, value of each field the spec uses...).
_Row = tuple[Any, ...]
# A match key's layout over the encoded (field, transform) columns: per key field, the
# column's index, or the indices of an unordered group's parts.
_Layout = tuple[int | tuple[int, ...], ...]


# Sent to the workers: pickling a frozen native (compiled) class fails, so this stays a
# Python class when the module is compiled (see Makefile, `make setup`).
@mypyc_attr(native_class=False)
@dataclass(frozen=True, slots=True)
class TokeniseParams:
    """Everything a tokeniser needs; picklable, so workers are built from it.

    Attributes:
        spec: the domain's linkage spec.
        domain_key: the domain key version (secret).
        domain: linkage domain name.
        key_version: key version label, e.g. ``"v1"``.
        reference_secret: the organisation's reference secret (secret).
        dataset: dataset name; references are separated per dataset.
        payload_columns: names of the payload columns, in the records' order.
        opt_out_flags: the chunks carry each record's research-restricted flag (the
            source applied opt-outs: :mod:`client_sdk.opt_out`).
        assigned_birthdays: days of the year (``MM-DD``) this extract's dates of birth
            are heaped on (:func:`client_sdk.quality.assigned_birthdays`, measured from
            the extract): a match key that rests on the day of birth
            (:func:`client_sdk.normalise.placeholders.rests_on_day_of_birth`) is not
            formed on such a date. Blocks and comparisons keep it.
    """

    spec: LinkageSpec
    domain_key: DomainKey = field(repr=False)
    domain: str
    key_version: str
    reference_secret: bytes = field(repr=False)
    dataset: str
    payload_columns: tuple[str, ...] = ()
    opt_out_flags: bool = False
    assigned_birthdays: frozenset[str] = frozenset()


@mypyc_attr(native_class=False)  # returned by the workers, pickled as TokeniseParams
@dataclass(frozen=True, slots=True)
class EncodedChunk:
    """One chunk, encoded, with what the caller keeps locally.

    Attributes:
        data: the chunk's bytes (``keys.batch`` format).
        refs: the records' references, in order.
        local_ids: the records' local ids, in order (never leave the organisation).
        token_counts: tokens emitted per match key, in spec order.
        restricted: records flagged research-restricted (a count, for this machine only).
    """

    data: bytes
    refs: list[RecordRef]
    local_ids: list[str]
    token_counts: list[int]
    restricted: int = 0

    def __len__(self) -> int:
        return len(self.refs)


class Tokeniser:
    """Derives the tokens and references of records under one spec, domain key and dataset."""

    __slots__ = (
        "_assigned",
        "_assigned_blocks",
        "_block_columns",
        "_block_parts",
        "_columns",
        "_deriver",
        "_evidence",
        "_groups",
        "_key_columns",
        "_getter",
        "_partial_year",
        "_parts",
        "_refs",
        "block_names",
        "key_names",
        "params",
    )

    def __init__(self, params: TokeniseParams) -> None:
        spec = params.spec
        self.params = params
        self.key_names = tuple(spec.key_names)
        self._deriver = TokenDeriver(
            params.domain_key,
            domain=params.domain,
            version=params.key_version,
            spec_hash=spec.content_hash,
            key_names=self.key_names,
        )
        self._refs = ReferenceDeriver(params.reference_secret, dataset=params.dataset)
        self.block_names = tuple(b.name for b in spec.blocking_keys)
        used: list[str] = []
        for key in (*spec.match_keys, *spec.blocking_keys):
            for f in key.leaves:
                if f.field not in used:
                    used.append(f.field)
        for comparison in spec.comparisons:
            for name in comparison.fields:
                if name not in used:
                    used.append(name)
        # Keys not formed on an assigned birthday: (date's row position, days, key indices).
        day_keys = tuple(
            i
            for i, key in enumerate(spec.match_keys)
            if rests_on_day_of_birth((f.field, f.transform) for f in key.leaves)
        )
        self._assigned: tuple[int, frozenset[str], tuple[int, ...]] | None = (
            (2 + used.index("date_of_birth"), params.assigned_birthdays, day_keys)
            if params.assigned_birthdays and day_keys
            else None
        )
        # Blocking keys not formed there either (a block of everyone "born" on 1 January).
        day_blocks = tuple(
            j
            for j, key in enumerate(spec.blocking_keys)
            if rests_on_day_of_birth((f.field, f.transform) for f in key.leaves)
        )
        self._assigned_blocks: tuple[int, frozenset[str], tuple[int, ...]] | None = (
            (2 + used.index("date_of_birth"), params.assigned_birthdays, day_blocks)
            if params.assigned_birthdays and day_blocks
            else None
        )
        # A partial date of birth follows the fields, for the evidence alone: blocking keys'
        # ``date_of_birth:year`` and the date-of-birth comparison read it, no match key does
        # (docs/normalisation.md, "Partial dates of birth"). The flag comes last, so the
        # fields keep their positions.
        partial = (
            ("date_of_birth_partial",) if spec.blocking_keys and "date_of_birth" in used else ()
        )
        flag = ("restricted",) if params.opt_out_flags else ()
        self._getter: Callable[[NormalisedRecord], _Row] = operator.attrgetter(
            "local_id", "payload", *used, *partial, *flag
        )
        # Each field is looked up once per record in one cache (names, dates and postcodes
        # repeat; NHS numbers and other ids do not), which yields the encoded value under
        # every transform the spec applies to that field.
        transforms: dict[str, list[str | None]] = {name: [] for name in used}
        for key in (*spec.match_keys, *spec.blocking_keys):
            for f in key.leaves:
                if f.transform not in transforms[f.field]:
                    transforms[f.field].append(f.transform)
        flat: list[tuple[str, str | None]] = [
            (name, transform) for name in used for transform in transforms[name]
        ]
        self._groups = tuple(
            (
                2 + position,
                _encoder(tuple(transforms[name]), cached=name not in _UNIQUE_FIELDS),
                (None,) * len(transforms[name]),
            )
            for position, name in enumerate(used)
        )

        def column(f: KeyField) -> int:
            return flat.index((f.field, f.transform))

        # Blocking keys read the year of a date of birth, full or partial, from a column
        # after the fields' (the partial's row position, and the full dates' year column).
        self._partial_year: tuple[int, int] | None = (
            (2 + len(used), flat.index(("date_of_birth", "year")))
            if partial and ("date_of_birth", "year") in flat
            else None
        )

        def block_column(f: KeyField) -> int:
            if self._partial_year is not None and (f.field, f.transform) == (
                "date_of_birth",
                "year",
            ):
                return len(flat)
            return column(f)

        layouts: list[_Layout] = [
            tuple(
                tuple(map(column, f.unordered)) if isinstance(f, UnorderedFields) else column(f)
                for f in key.fields
            )
            for key in spec.match_keys
        ]
        self._parts = tuple(_parts_getter(layout) for layout in layouts)
        self._columns = tuple(
            _FieldColumn(
                2 + position,
                tuple(transforms[name]),
                cached=name not in _UNIQUE_FIELDS,
            )
            for position, name in enumerate(used)
            if transforms[name]  # a field only comparisons read (given_name) has no column
        )
        self._key_columns = tuple(layouts)
        block_layouts: list[_Layout] = [
            tuple(
                tuple(map(block_column, f.unordered))
                if isinstance(f, UnorderedFields)
                else block_column(f)
                for f in block.fields
            )
            for block in spec.blocking_keys
        ]
        self._block_columns = tuple(block_layouts)
        self._block_parts = tuple(_parts_getter(layout) for layout in block_layouts)
        self._evidence = (
            EvidenceEncoder(
                spec,
                params.domain_key,
                domain=params.domain,
                key_version=params.key_version,
                fields=[*used, *partial],
                uncached=_UNIQUE_FIELDS,
                assigned_birthdays=params.assigned_birthdays,
            )
            if spec.blocking_keys
            else None
        )

    def row(self, record: NormalisedRecord) -> _Row:
        """The compact row a worker needs: local id, payload, then the fields the spec uses."""
        return self._getter(record)

    def key_values_of_row(self, row: _Row) -> list[bytes | None]:
        """Each match key's encoded values (the HMAC input after the key's prefix), or ``None``.

        Never leaves the process: the linter counts these, :meth:`tokens_of_row` keys them.
        """
        encoded: tuple[bytes | None, ...] = ()
        for position, encode, empty in self._groups:
            value = row[position]
            encoded += encode(value) if value else empty
        joined: list[bytes | None] = []
        for parts in self._parts:
            chosen = parts(encoded)
            joined.append(None if None in chosen else b"".join(chosen))  # type: ignore[arg-type]
        if self._assigned is not None:
            position, days, day_keys = self._assigned
            value = row[position]
            if value and value[5:] in days:
                for i in day_keys:
                    joined[i] = None
        return joined

    def tokens_of_row(self, row: _Row) -> tuple[Token | None, ...]:
        """One token (or ``None``) per match key, strongest first."""
        return self._deriver.derive_all(self.key_values_of_row(row))

    def tokens(self, record: NormalisedRecord) -> tuple[Token | None, ...]:
        """One token (or ``None``) per match key of ``record``, strongest first."""
        return self.tokens_of_row(self.row(record))

    def block_values_of_row(self, row: _Row) -> list[bytes | None]:
        """Each blocking key's encoded values (the block token's input), or ``None``.

        Never leaves the process: the linter counts block sizes with these.
        """
        encoded: tuple[bytes | None, ...] = ()
        for position, encode, empty in self._groups:
            value = row[position]
            encoded += encode(value) if value else empty
        if self._partial_year is not None:
            position, year = self._partial_year
            encoded += (_with_partial_years(encoded[year : year + 1], [row[position]])[0],)
        out: list[bytes | None] = []
        for parts in self._block_parts:
            chosen = parts(encoded)
            out.append(None if None in chosen else b"".join(chosen))  # type: ignore[arg-type]
        if self._assigned_blocks is not None:
            position, days, day_blocks = self._assigned_blocks
            value = row[position]
            if value and value[5:] in days:
                for j in day_blocks:
                    out[j] = None
        return out

    def evidence(self, record: NormalisedRecord) -> Evidence:
        """``record``'s block tokens and comparison tokens (empty without blocking keys)."""
        row = self.row(record)
        chunk = self._chunk_evidence([row], [[v] for v in self.block_values_of_row(row)])
        if chunk is None:
            return (), ()
        return chunk.blocks[0], chunk.cells()[0]

    def comparison_digests_of_row(self, row: _Row, block: int) -> list[tuple[int, bytes]]:
        """Per comparison value under ``block``: its column there and its level digest.

        For the linter (:meth:`client_sdk.evidence.EvidenceEncoder.comparison_digests_of_row`).
        """
        if self._evidence is None:
            raise IndexError(f"no blocking key {block}: the spec has none")
        return self._evidence.comparison_digests_of_row(row, block)

    def _chunk_evidence(
        self, rows: Sequence[_Row], block_values: Sequence[Sequence[bytes | None]]
    ) -> ChunkEvidence | None:
        """The chunk evidence of ``rows`` (``None`` without blocking keys)."""
        if self._evidence is None:
            return None
        return self._evidence.chunk(rows, block_values)

    def reference(self, local_id: str) -> RecordRef:
        """The opaque reference of a local record id."""
        return self._refs.derive(local_id)

    def chunk_of_rows(self, rows: Sequence[_Row]) -> TokenChunk:
        """A token chunk of ``rows`` (as :meth:`row` makes them)."""
        derive_ref = self._refs.derive
        tokens_of_row = self.tokens_of_row
        per_row = [self.block_values_of_row(r) for r in rows]
        block_values = [[values[j] for values in per_row] for j in range(len(self.block_names))]
        return TokenChunk(
            key_names=self.key_names,
            payload_columns=self.params.payload_columns,
            refs=[derive_ref(r[0]) for r in rows],
            tokens=[tokens_of_row(r) for r in rows],
            payload=[tuple(r[1]) for r in rows]
            if self.params.payload_columns
            else [()] * len(rows),
            evidence=self._chunk_evidence(rows, block_values),
            flags=self._flags(rows),
        )

    def _flags(self, rows: Sequence[_Row]) -> bytes | None:
        """Each row's flag byte (its last item), when the chunks carry flags."""
        if not self.params.opt_out_flags:
            return None
        return bytes([RESEARCH_RESTRICTED if r[-1] else 0 for r in rows])

    def encode_rows(self, rows: Sequence[_Row]) -> EncodedChunk:
        """Tokenise and encode one block of rows.

        The same tokens as :meth:`tokens_of_row` row by row, worked column by column: each
        field's values are encoded under every transform in one pass (a cache hit per
        repeated value), each match key's inputs are joined in one pass, and each key's
        tokens are derived in one loop (:meth:`keys.derive.TokenDeriver.derive_column`).

        The cycle collector is paused meanwhile: a chunk makes a few container objects per
        record (rows, token tuples, lists per column), none of them in a cycle, so each of
        the collections they would trigger finds nothing, yet every one of them walks the
        tokeniser's caches (some 4-6% of the CPU time with the evidence, measured
        4 December 2026). Everything a chunk makes is freed by reference counting as before.
        """
        paused = gc.isenabled()
        gc.disable()
        try:
            return self._encode_rows(rows)
        finally:
            if paused:
                gc.enable()

    def _encode_rows(self, rows: Sequence[_Row]) -> EncodedChunk:
        if not rows:
            return self._encode_chunk(
                rows, [], [[] for _ in self.key_names], self._chunk_evidence(rows, [])
            )
        flat: list[Sequence[bytes | None]] = []
        for column in self._columns:
            position = column.position
            flat.extend(column.encode([r[position] for r in rows]))
        derive = self._deriver.derive_column
        tokens: list[list[Token | None]] = []
        on_assigned_day: list[bool] = []
        if self._assigned is not None:
            dob, days, day_keys = self._assigned
            on_assigned_day = [bool(r[dob]) and r[dob][5:] in days for r in rows]
        for k, layout in enumerate(self._key_columns):
            columns = [
                flat[i] if isinstance(i, int) else _unordered_column([flat[j] for j in i])
                for i in layout
            ]
            inputs = _join_columns(columns)
            if on_assigned_day and k in day_keys:  # as key_values_of_row: not formed there
                inputs = [
                    None if day else v for v, day in zip(inputs, on_assigned_day, strict=True)
                ]
            tokens.append(derive(k, inputs))
        evidence = None
        if self._evidence is not None:
            if self._partial_year is not None:
                position, year = self._partial_year
                flat.append(_with_partial_years(flat[year], [r[position] for r in rows]))
            block_values = [
                _join_columns(
                    [
                        flat[i] if isinstance(i, int) else _unordered_column([flat[j] for j in i])
                        for i in layout
                    ]
                )
                for layout in self._block_columns
            ]
            if self._assigned_blocks is not None:  # as block_values_of_row: not formed there
                dob, days, day_blocks = self._assigned_blocks
                on_day = [bool(r[dob]) and r[dob][5:] in days for r in rows]
                for j in day_blocks:
                    block_values[j] = [
                        None if day else v for v, day in zip(block_values[j], on_day, strict=True)
                    ]
            evidence = self._chunk_evidence(rows, block_values)
        return self._encode_chunk(rows, [r[0] for r in rows], tokens, evidence)

    def _encode_chunk(
        self,
        rows: Sequence[_Row],
        local_ids: Sequence[Any],
        tokens: list[list[Token | None]],
        evidence: ChunkEvidence | None = None,
    ) -> EncodedChunk:
        """The chunk of ``rows`` given their local ids and each match key's token column."""
        refs = self._refs.derive_many(map(str, local_ids))
        flags = self._flags(rows)
        data = encode_chunk_columns(
            key_names=self.key_names,
            payload_columns=self.params.payload_columns,
            refs=refs,
            token_columns=tokens,
            payload=[r[1] for r in rows] if self.params.payload_columns else [],
            evidence=evidence,
            flags=flags,
        )
        return EncodedChunk(
            data=data,
            refs=refs,
            local_ids=[str(i) for i in local_ids],
            token_counts=[len(column) - column.count(None) for column in tokens],
            restricted=flags.count(RESEARCH_RESTRICTED) if flags else 0,
        )


class _FieldColumn:
    """One field of a block: its values, encoded under each transform the spec applies.

    Names, dates and postcodes repeat, so their encodings are kept in a bounded cache (a
    hit costs one dictionary lookup); NHS numbers and other ids do not, so they are not.
    """

    __slots__ = ("_cache", "_empty", "_encode", "_plain", "position")

    def __init__(self, position: int, transforms: tuple[str | None, ...], *, cached: bool) -> None:
        self.position = position
        self._encode = _encoder(transforms, cached=False)
        self._empty: tuple[None, ...] = (None,) * len(transforms)
        self._plain = transforms == (None,)
        self._cache: dict[Any, tuple[bytes | None, ...]] | None = (
            self._fresh_cache() if cached else None
        )

    def _fresh_cache(self) -> dict[Any, tuple[bytes | None, ...]]:
        return {None: self._empty, "": self._empty}

    def _fill(self, value: str) -> tuple[bytes | None, ...]:
        assert self._cache is not None
        if len(self._cache) >= _CACHE_SIZE:
            self._cache = self._fresh_cache()
        encoded = self._cache[value] = self._encode(value)
        return encoded

    def encode(self, values: Sequence[str | None]) -> list[list[bytes | None]]:
        """One list per transform: the encoded value of each record (or ``None``)."""
        if self._cache is None:
            if self._plain:  # the value itself, untransformed: encode it directly
                return [encode_values(values)]
            encode, empty = self._encode, self._empty
            encoded = [encode(v) if v else empty for v in values]
        else:
            cache = self._cache  # a direct dictionary lookup per value when compiled
            encoded = [cache.get(v) or self._fill(v) for v in values]  # type: ignore[arg-type]
        return [[e[i] for e in encoded] for i in range(len(self._empty))]


def _encoder(
    transforms: tuple[str | None, ...], *, cached: bool
) -> Callable[[str], tuple[bytes | None, ...]]:
    """Value → its encoded field under each transform (``None`` where nothing is left)."""
    functions = tuple(None if t is None else TRANSFORM_FUNCTIONS[t] for t in transforms)

    def encode(value: str) -> tuple[bytes | None, ...]:
        out: list[bytes | None] = []
        for function in functions:
            transformed = value if function is None else function(value)
            out.append(encode_value(transformed) if transformed else None)
        return tuple(out)

    return lru_cache(maxsize=_CACHE_SIZE)(encode) if cached else encode


def _with_partial_years(
    years: Sequence[bytes | None], partials: Sequence[str | None]
) -> list[bytes | None]:
    """Full dates' encoded years, with a partial date's year where there is none.

    A partial date's ``YYYY`` or ``YYYY-MM`` gives the year a full date of that year gives,
    so that both form one ``postcode_year`` block.
    """
    return [
        year if year is not None or not partial else encode_value(partial[:4])
        for year, partial in zip(years, partials, strict=True)
    ]


def _join_columns(columns: Sequence[Sequence[bytes | None]]) -> Sequence[bytes | None]:
    """Each record's parts joined, ``None`` where any part is ``None``.

    Keys of two to four fields (most of a spec) are joined with ``+`` on unpacked parts,
    which costs about half as much as a ``b"".join`` of a tuple per record.
    """
    if len(columns) == 1:
        return columns[0]
    if len(columns) == 2:
        first, second = columns
        return [
            None if a is None or b is None else a + b for a, b in zip(first, second, strict=True)
        ]
    if len(columns) == 3:
        first, second, third = columns
        return [
            None if a is None or b is None or c is None else a + b + c
            for a, b, c in zip(first, second, third, strict=True)
        ]
    if len(columns) == 4:
        first, second, third, fourth = columns
        return [
            None if a is None or b is None or c is None or d is None else a + b + c + d
            for a, b, c, d in zip(first, second, third, fourth, strict=True)
        ]
    return [None if None in parts else b"".join(parts) for parts in zip(*columns, strict=True)]


def _unordered_column(columns: Sequence[Sequence[bytes | None]]) -> Sequence[bytes | None]:
    """Each record's unordered group: its parts sorted bytewise and joined, or ``None``.

    The same values in any order give the same bytes (docs/token-format.md).
    """
    if len(columns) == 2:
        first, second = columns
        return [
            None if a is None or b is None else (a + b if a <= b else b + a)
            for a, b in zip(first, second, strict=True)
        ]
    return [_sorted_join(parts) for parts in zip(*columns, strict=True)]


def _sorted_join(parts: Sequence[bytes | None]) -> bytes | None:
    """The parts sorted bytewise and joined, or ``None`` if any part is ``None``."""
    present = [p for p in parts if p is not None]
    return b"".join(sorted(present)) if len(present) == len(parts) else None


def _parts_getter(layout: _Layout) -> Callable[[Sequence[bytes | None]], tuple[bytes | None, ...]]:
    """Encoded columns → one match key's parts, each unordered group sorted and joined.

    A key without a group (most keys) gets ``itemgetter``, a tuple even for one index.
    """
    plain = [i for i in layout if isinstance(i, int)]
    if len(plain) == len(layout):
        if len(plain) == 1:
            (only,) = plain
            return lambda items: (items[only],)
        return operator.itemgetter(*plain)

    def parts(items: Sequence[bytes | None]) -> tuple[bytes | None, ...]:
        out: list[bytes | None] = []
        for i in layout:
            if isinstance(i, int):
                out.append(items[i])
            else:
                out.append(_sorted_join([items[j] for j in i]))
        return tuple(out)

    return parts
