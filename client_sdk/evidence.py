"""Records' evidence for the probabilistic stage: block tokens and comparison tokens.

One block token per blocking key whose fields are all present, and under each such block
one short comparison token per value of each comparison level
(:class:`keys.derive.EvidenceDeriver`, docs/probabilistic.md, docs/token-format.md). The
tokeniser (:mod:`client_sdk.tokenise`) hands over the rows and each blocking key's encoded
input; this module derives and lays out the chunk's evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

from client_sdk.normalise.transforms import LEVEL_FUNCTIONS, PAIR_LEVEL_FUNCTIONS
from keys.chunk import ChunkEvidence
from keys.derive import ComparisonToken, DomainKey, EvidenceDeriver, LevelDigests, Token
from keys.spec import LinkageSpec

__all__ = ["Evidence", "EvidenceEncoder"]

_EVIDENCE_WINDOW = 128
"""Records whose evidence is derived together (see :meth:`EvidenceEncoder.chunk`)."""
_CACHE_SIZE = 1 << 17
"""Values whose level digests each comparison keeps (names, dates and postcodes repeat)."""
_ASSIGNED_DAY_LEVELS = frozenset({"year_month", "year"})
"""The date-of-birth levels an assigned birthday keeps (:func:`_level_encoder`) when its
comparison has no ``assigned_year`` level."""
_ASSIGNED_YEAR_LEVELS = frozenset({"year_month", "assigned_year"})
"""The ones it keeps when it has: not ``year``, so that a pair of one assigned birthday and
a real one of the same year agrees at ``assigned_year``, a level of its own."""

# A row as the tokeniser makes it: (local id, payload, value of each field the spec uses...).
_Row = tuple[Any, ...]
# One record's evidence: a block token (or None) per blocking key, and per evidence column
# the record's comparison tokens.
Evidence = tuple[tuple[Token | None, ...], tuple[tuple[ComparisonToken, ...], ...]]
# A value's level digests (16 bytes each, joined), how many per level (a byte each) and in
# all (kept, so that laying out a window reads neither byte string but to copy it).
_Digests = tuple[bytes, bytes, int]

_NOTHING: _Digests = (b"", b"", 0)


class _Levels:
    """One comparison's levels (its one-field or its two-field ones): key → digests, counts.

    The key is the value (one-field levels) or the pair of values (two-field levels). With
    ``cached``, each key's result is kept in a dictionary (a hit is one lookup), emptied
    when it holds :data:`_CACHE_SIZE` keys; it lives as long as its tokeniser, in memory.
    """

    __slots__ = ("_cache", "_encode")

    def __init__(self, encode: Callable[[Any], _Digests], *, cached: bool) -> None:
        self._encode = encode
        self._cache: dict[Hashable, _Digests] | None = {} if cached else None

    def of(self, key: Hashable) -> _Digests:
        """The digests and counts of one key."""
        cache = self._cache
        if cache is None:
            return self._encode(key)
        found = cache.get(key)
        if found is None:
            if len(cache) >= _CACHE_SIZE:
                cache.clear()
            found = cache[key] = self._encode(key)
        return found

    def column(self, keys: Sequence[Hashable], missing: _Digests) -> list[_Digests]:
        """The digests and counts of each key (``missing`` for a ``None`` or empty key)."""
        encode, cache = self._encode, self._cache
        out: list[_Digests] = []
        if cache is None:
            for key in keys:
                out.append(encode(key) if key else missing)
        else:
            for key in keys:
                if not key:
                    out.append(missing)
                    continue
                found = cache.get(key)  # a direct dictionary lookup when compiled
                if found is None:
                    if len(cache) >= _CACHE_SIZE:
                        cache.clear()
                    found = cache[key] = encode(key)
                out.append(found)
        return out


class EvidenceEncoder:
    """Derives the evidence of rows under one spec (with blocking keys) and domain key."""

    __slots__ = (
        "_block_caches",
        "_block_columns",
        "_columns",
        "_comparisons",
        "_deriver",
        "_under",
        "_zero_counts",
        "block_names",
    )

    def __init__(
        self,
        spec: LinkageSpec,
        domain_key: DomainKey,
        *,
        domain: str,
        key_version: str,
        fields: Sequence[str],
        uncached: frozenset[str] = frozenset(),
        assigned_birthdays: frozenset[str] = frozenset(),
    ) -> None:
        """``fields`` are the row's fields after its local id and payload, in order.

        Each comparison caches its values' level digests unless its field is in
        ``uncached`` (values that do not repeat, such as NHS numbers), and each blocking
        key its block tokens and secrets unless one of its fields is. A date of birth on
        one of ``assigned_birthdays`` (``MM-DD``) gives its comparison's ``year_month`` and
        ``assigned_year`` (or ``year``) only (:func:`_level_encoder`), and so does a partial
        date (``date_of_birth_partial``, when among ``fields``) where there is no date:
        its year and month, or its year alone.
        """
        self.block_names = tuple(b.name for b in spec.blocking_keys)
        self._deriver = EvidenceDeriver(
            domain_key,
            domain=domain,
            version=key_version,
            spec_hash=spec.content_hash,
            block_names=self.block_names,
        )
        partial = (
            2 + list(fields).index("date_of_birth_partial")
            if "date_of_birth_partial" in fields
            else 0
        )
        self._comparisons = tuple(
            (
                2 + list(fields).index(c.field),
                2 + list(fields).index(c.with_field) if c.with_field else 0,
                _Levels(
                    _level_encoder(
                        c.name,
                        c.levels[: _pair_start(c.levels)],
                        assigned=assigned_birthdays if c.field == "date_of_birth" else frozenset(),
                        dates=c.field == "date_of_birth",
                    ),
                    cached=c.field not in uncached,
                ),
                _pair_levels(
                    c.name, c.levels[_pair_start(c.levels) :], cached=c.field not in uncached
                ),
                (b"", bytes(len(c.levels)), 0),
                partial if c.field == "date_of_birth" else 0,
            )
            for c in spec.comparisons
        )
        # A window's columns of level digests: per comparison its one-field levels', then
        # its two-field levels' if it has any; per blocking key, the columns under it.
        starts: list[int] = []
        at = 0
        for comparison in self._comparisons:
            starts.append(at)
            at += 1 if comparison[3] is None else 2
        self._under = tuple(spec.comparisons_under(j) for j in range(len(spec.blocking_keys)))
        self._block_columns = tuple(
            tuple(
                column
                for c in under
                for column in (
                    (starts[c],) if self._comparisons[c][3] is None else (starts[c], starts[c] + 1)
                )
            )
            for under in self._under
        )
        self._block_caches: tuple[dict[bytes, tuple[bytes, bytes]] | None, ...] = tuple(
            None if any(f.field in uncached for f in block.leaves) else {}
            for block in spec.blocking_keys
        )
        self._zero_counts = tuple(
            bytes(sum(len(spec.comparisons[c].levels) for c in under)) for under in self._under
        )
        self._columns = tuple(
            (
                col.block,
                spec.comparisons[col.comparison].name,
                spec.comparisons[col.comparison].levels[col.level],
            )
            for col in spec.evidence_columns
        )

    def comparison_digests_of_row(self, row: _Row, block: int) -> list[tuple[int, bytes]]:
        """Per comparison value under ``block``: its column there and its level digest.

        For the linter, which counts how many records share a comparison value inside a
        block; digests never leave the process.
        """
        column = sum(len(self._comparisons[c][4][1]) for j in range(block) for c in self._under[j])
        out: list[tuple[int, bytes]] = []
        for c in self._under[block]:
            position, other, levels, pair, empty, partial = self._comparisons[c]
            value = row[position] or (row[partial] if partial else None)
            digests, counts, _ = levels.of(value) if value else empty
            if value and pair is not None:
                pair_digests, pair_counts, _ = pair.of((value, row[other] or ""))
                digests, counts = digests + pair_digests, counts + pair_counts
            at = 0
            for k, count in enumerate(counts):
                for _ in range(count):
                    out.append((column + k, digests[at : at + 16]))
                    at += 16
            column += len(counts)
        return out

    def chunk(
        self, rows: Sequence[_Row], block_values: Sequence[Sequence[bytes | None]]
    ) -> ChunkEvidence:
        """The chunk evidence of ``rows``; ``block_values[j][i]`` is row i's block j input.

        Worked in windows of :data:`_EVIDENCE_WINDOW` records, so that the window's
        secrets, digests and cipher input (some 330 KB each at 160 comparison tokens a
        record) stay in the processor's cache through every pass over them: against one
        pass over a 20,000-record chunk (25 MB) this halves the cost of the joins, the XOR
        and the cipher, and 128 records gave some 4% more records per CPU-second than
        1,024 (docs/performance-history.md, eighth pass).
        """
        blocks: list[tuple[Token | None, ...]] = []
        counts: list[bytes] = []
        tokens: list[bytes] = []
        for start in range(0, len(rows), _EVIDENCE_WINDOW):
            end = start + _EVIDENCE_WINDOW
            window = self._window(rows[start:end], [column[start:end] for column in block_values])
            blocks += window[0]
            counts.append(window[1])
            tokens.append(window[2])
        return ChunkEvidence(
            block_names=self.block_names,
            columns=self._columns,
            blocks=blocks,
            counts=b"".join(counts),
            tokens=b"".join(tokens),
        )

    def _window(
        self,
        rows: Sequence[_Row],
        block_values: Sequence[Sequence[bytes | None]],
    ) -> tuple[list[tuple[Token | None, ...]], bytes, bytes]:
        """Block tokens, counts and comparison tokens of a window of records.

        Worked column by column, as :meth:`client_sdk.tokenise.Tokeniser.encode_rows` works
        the match keys: each comparison's level digests are looked up once per record
        (cached per value, and per pair of values for its two-field levels) and reused
        under every block; each blocking key's tokens and secrets come from one loop
        (:meth:`keys.derive.EvidenceDeriver.block_column`, cached per block value). One
        pass over the records then lays the window out in its record-by-record order as
        three lists of parts (digests, counts, each digest's block secret), each joined
        once, so that nothing is built per record and block but its secret repeated; the
        window's comparison tokens are one call of
        :meth:`keys.derive.EvidenceDeriver.comparison_tokens`.
        """
        deriver = self._deriver
        looked_up: list[list[_Digests]] = []  # per column, each record's digests and counts
        for position, other, levels, pair, empty, partial in self._comparisons:
            if partial:  # a date of birth: the partial one where there is none
                values = [r[position] or r[partial] for r in rows]
            else:
                values = [r[position] for r in rows]
            looked_up.append(levels.column(values, empty))
            if pair is not None:  # the levels from the first two-field one on follow
                keys = [
                    (v, r[other] or "") if v else None for v, r in zip(values, rows, strict=True)
                ]
                looked_up.append(pair.column(keys, _NOTHING))
        token_columns: list[list[Token | None]] = []
        secret_columns: list[list[bytes | None]] = []
        for j in range(len(self._block_columns)):
            tokens, block_secrets = deriver.block_column(j, block_values[j], self._block_caches[j])
            token_columns.append(tokens)
            secret_columns.append(block_secrets)
        under = [
            (secret_columns[j], [looked_up[c] for c in columns], self._zero_counts[j])
            for j, columns in enumerate(self._block_columns)
        ]
        digests: list[bytes] = []
        counts: list[bytes] = []
        secrets: list[bytes] = []
        for i in range(len(rows)):
            for block_secrets, columns, zeros in under:
                secret = block_secrets[i]
                if secret is None:  # a record without the block: no tokens, zero counts
                    counts.append(zeros)
                    continue
                size = 0
                for column in columns:
                    entry = column[i]
                    digests.append(entry[0])
                    counts.append(entry[1])
                    size += entry[2]
                secrets.append(secret * size)
        return (
            list(zip(*token_columns, strict=True)),
            b"".join(counts),
            deriver.comparison_tokens(b"".join(secrets), b"".join(digests)),
        )


def _pair_start(levels: Sequence[str]) -> int:
    """Where a comparison's levels stop being keyed by the value alone: its first two-field
    level (the number of levels if it has none).

    The levels before it are derived from the field's value and cached by it; from it on
    (two-field levels, and any one-field level after one: ``nysiis`` and ``initial``
    after ``joined_middle``) from the pair of values, so that each record's digests come
    out in the spec's order of levels, which the broker reads as strongest first.
    """
    for i, level in enumerate(levels):
        if level in PAIR_LEVEL_FUNCTIONS:
            return i
    return len(levels)


def _level_encoder(
    comparison: str,
    levels: Sequence[str],
    *,
    assigned: frozenset[str] = frozenset(),
    dates: bool = False,
) -> Callable[[str], _Digests]:
    """Value → the digests of ``levels`` (one-field levels) joined (16 bytes each), and how
    many per level (a byte each).

    Digests are :class:`keys.derive.LevelDigests` of each level's values, strongest level
    first (docs/token-format.md#comparison-tokens). A date of birth on one of the
    ``assigned`` days (``MM-DD``: the birthday an extract's system writes for an unknown
    one, :func:`client_sdk.quality.assigned_birthdays`) has only its ``year_month`` and
    ``assigned_year`` values (``year`` for a comparison without that level): its day
    says nothing of the person. As an exact agreement, the namesakes of a hostel "born" on
    1 January of one year would make every exact date of birth weigh less
    (docs/probabilistic.md, "Assigned dates of birth"). Every other date has its
    ``assigned_year`` value too, which is its year: listed after ``year``, the level is
    the strongest agreement only of a pair with an assigned birthday and the same year,
    which then weighs what such pairs are learnt to weigh, not what a true pair with a
    day and month both mistyped does.

    With ``dates`` (a date-of-birth comparison), a partial date (``YYYY`` or ``YYYY-MM``,
    :attr:`client_sdk.record.NormalisedRecord.date_of_birth_partial`) keeps the same
    levels as an assigned birthday, and of them only what its parts give: ``year_month``
    for a year and month, the year levels for both. It agrees with a full date of its
    year (and month) where an assigned birthday would, and nowhere a day is needed.
    """
    kept = _ASSIGNED_YEAR_LEVELS if "assigned_year" in levels else _ASSIGNED_DAY_LEVELS
    functions = tuple(
        (
            LevelDigests(comparison, level).digests,
            LEVEL_FUNCTIONS[level],
            level in kept,
        )
        for level in levels
    )
    if len(functions) == 1 and not assigned and not dates:
        # One level (an NHS number's or sex's exact value): no parts or counts to gather,
        # which matters for the comparisons that are not cached.
        ((only, function, _),) = functions

        def encode_one(value: str) -> _Digests:
            values = function(value)
            return only(values), bytes((len(values),)), len(values)

        return encode_one

    def encode(value: str) -> _Digests:
        parts: list[bytes] = []
        counts: list[int] = []
        # A partial date (shorter than YYYY-MM-DD), or a date on an assigned day.
        on_assigned_day = (dates and len(value) != 10) or (bool(assigned) and value[5:] in assigned)
        for digests, function, on_day in functions:
            values = function(value) if on_day or not on_assigned_day else ()
            parts.append(digests(values))
            counts.append(len(values))
        return b"".join(parts), bytes(counts), sum(counts)

    return encode


def _pair_levels(comparison: str, levels: Sequence[str], *, cached: bool) -> _Levels | None:
    """(Value, the ``with_field``'s value) → the digests and counts of ``levels``: the
    comparison's levels from its first two-field one on (:func:`_pair_start`).

    None for a comparison without two-field levels. Kept apart from the levels before
    them, whose cache is by the value alone: a pair of names repeats far less than one
    name. A one-field level among them reads the value alone. A missing second value is
    handed over as ``""``: ``either_order`` then has no value, ``any_given`` and
    ``joined_middle`` the given name alone.
    """
    if not levels:
        return None
    functions = tuple(
        (
            LevelDigests(comparison, level).digests,
            PAIR_LEVEL_FUNCTIONS.get(level) or _first_only(LEVEL_FUNCTIONS[level]),
        )
        for level in levels
    )

    def encode(pair: tuple[str, str]) -> _Digests:
        value, other = pair
        parts: list[bytes] = []
        counts: list[int] = []
        for digests, function in functions:
            values = function(value, other)
            parts.append(digests(values))
            counts.append(len(values))
        return b"".join(parts), bytes(counts), sum(counts)

    return _Levels(encode, cached=cached)


def _first_only(
    function: Callable[[str], tuple[str, ...]],
) -> Callable[[str, str], tuple[str, ...]]:
    """A one-field level as a two-field one: it reads the first value alone."""

    def level(value: str, other: str) -> tuple[str, ...]:
        return function(value)

    return level
