"""Records' evidence for the probabilistic stage: block tokens and comparison tokens.

One block token per blocking key whose fields are all present, and under each such block
one short comparison token per value of each comparison level
(:class:`keys.derive.EvidenceDeriver`, docs/probabilistic.md, docs/token-format.md). The
tokeniser (:mod:`client_sdk.tokenise`) hands over the rows and each blocking key's encoded
input; this module derives and lays out the chunk's evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from itertools import chain
from typing import Any

from client_sdk.normalise.transforms import LEVEL_FUNCTIONS, PAIR_LEVEL_FUNCTIONS
from keys.chunk import ChunkEvidence
from keys.derive import ComparisonToken, DomainKey, EvidenceDeriver, LevelDigests, Token
from keys.spec import LinkageSpec

__all__ = ["Evidence", "EvidenceEncoder"]

_EVIDENCE_WINDOW = 1_024
"""Records whose evidence is derived together (see :meth:`EvidenceEncoder.chunk`)."""
_ASSIGNED_DAY_LEVELS = frozenset({"year_month", "year"})
"""The date-of-birth levels an assigned birthday keeps (:func:`_level_encoder`)."""
_CACHE_SIZE = 1 << 17
"""Values whose level digests each comparison keeps (names, dates and postcodes repeat)."""

# A row as the tokeniser makes it: (local id, payload, value of each field the spec uses...).
_Row = tuple[Any, ...]
# One record's evidence: a block token (or None) per blocking key, and per evidence column
# the record's comparison tokens.
Evidence = tuple[tuple[Token | None, ...], tuple[tuple[ComparisonToken, ...], ...]]


class EvidenceEncoder:
    """Derives the evidence of rows under one spec (with blocking keys) and domain key."""

    __slots__ = ("_columns", "_comparisons", "_deriver", "_under", "_zero_counts", "block_names")

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
        ``uncached`` (values that do not repeat, such as NHS numbers). A date of birth on
        one of ``assigned_birthdays`` (``MM-DD``) gives its comparison's ``year_month`` and
        ``year`` only (:func:`_level_encoder`).
        """
        self.block_names = tuple(b.name for b in spec.blocking_keys)
        self._deriver = EvidenceDeriver(
            domain_key,
            domain=domain,
            version=key_version,
            spec_hash=spec.content_hash,
            block_names=self.block_names,
        )
        self._comparisons = tuple(
            (
                2 + list(fields).index(c.field),
                2 + list(fields).index(c.with_field) if c.with_field else 0,
                _level_encoder(
                    c.name,
                    c.levels,
                    cached=c.field not in uncached,
                    assigned=assigned_birthdays if c.field == "date_of_birth" else frozenset(),
                ),
                _pair_encoder(c.name, c.levels, cached=c.field not in uncached),
                (b"", bytes(len(c.levels))),
            )
            for c in spec.comparisons
        )
        self._under = tuple(spec.comparisons_under(j) for j in range(len(spec.blocking_keys)))
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
            position, other, levels, pair, empty = self._comparisons[c]
            value = row[position]
            digests, counts = levels(value) if value else empty
            if value and pair is not None:
                pair_digests, pair_counts = pair(value, row[other])
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
        secrets, digests and cipher input (some 1.3 MB) stay in the processor's cache
        through every pass over them: against one pass over a 20,000-record chunk (25 MB)
        this halves the cost of the joins, the XOR and the cipher.
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
        the match keys: each
        comparison's level digests are looked up once per record (cached per value) and
        reused under every block; each blocking key's tokens and secrets come from one loop
        (:meth:`keys.derive.EvidenceDeriver.block_column`); the record-by-record order of
        the chunk is then one C-level join over the columns, and the window's comparison
        tokens one call of :meth:`keys.derive.EvidenceDeriver.comparison_tokens`.
        """
        deriver, n = self._deriver, len(rows)
        digest_columns: list[list[bytes]] = []
        count_columns: list[list[bytes]] = []
        for position, other, levels, pair, empty in self._comparisons:
            values = [r[position] for r in rows]
            looked_up = [levels(v) if v else empty for v in values]
            if pair is not None:  # two-field levels come last: their digests follow
                looked_up = [
                    _joined(x, pair(v, r[other])) if v else x
                    for x, v, r in zip(looked_up, values, rows, strict=True)
                ]
            digest_columns.append([x[0] for x in looked_up])
            count_columns.append([x[1] for x in looked_up])
        token_columns: list[list[Token | None]] = []
        digests: list[list[bytes]] = []  # per blocking key, each record's digests under it
        counts: list[list[bytes]] = []
        secrets: list[list[bytes]] = []
        for j, under in enumerate(self._under):
            tokens, block_secrets = deriver.block_column(j, block_values[j])
            token_columns.append(tokens)
            if under:
                joined = list(map(b"".join, zip(*[digest_columns[c] for c in under], strict=True)))
                joined_counts = list(
                    map(b"".join, zip(*[count_columns[c] for c in under], strict=True))
                )
            else:
                joined, joined_counts = [b""] * n, [b""] * n
            if None in block_secrets:  # records without the block: no tokens, zero counts
                zeros = self._zero_counts[j]
                joined = [d if s else b"" for d, s in zip(joined, block_secrets, strict=True)]
                joined_counts = [
                    c if s else zeros for c, s in zip(joined_counts, block_secrets, strict=True)
                ]
            digests.append(joined)
            counts.append(joined_counts)
            secrets.append(
                [
                    s * (len(d) >> 4) if s else b""
                    for s, d in zip(block_secrets, joined, strict=True)
                ]
            )
        return (
            list(zip(*token_columns, strict=True)),
            b"".join(chain.from_iterable(zip(*counts, strict=True))),
            deriver.comparison_tokens(
                b"".join(chain.from_iterable(zip(*secrets, strict=True))),
                b"".join(chain.from_iterable(zip(*digests, strict=True))),
            ),
        )


def _joined(first: tuple[bytes, bytes], second: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
    return first[0] + second[0], first[1] + second[1]


def _level_encoder(
    comparison: str,
    levels: Sequence[str],
    *,
    cached: bool,
    assigned: frozenset[str] = frozenset(),
) -> Callable[[str], tuple[bytes, bytes]]:
    """Value → its one-field levels' digests joined (16 bytes each), and how many per level
    (a byte each).

    Digests are :class:`keys.derive.LevelDigests` of each level's values, strongest level
    first (docs/token-format.md#comparison-tokens). A date of birth on one of the
    ``assigned`` days (``MM-DD``: the birthday an extract's system writes for an unknown
    one, :func:`client_sdk.quality.assigned_birthdays`) has only its ``year_month`` and
    ``year`` values: its day says nothing of the person. As an exact agreement, the
    namesakes of a hostel "born" on 1 January of one year would make every exact date of
    birth weigh less (docs/probabilistic.md, "Assigned dates of birth"); at
    ``year_month`` they weigh what that level is learnt to weigh.
    """
    functions = tuple(
        (
            LevelDigests(comparison, level).digests,
            LEVEL_FUNCTIONS[level],
            level in _ASSIGNED_DAY_LEVELS,
        )
        for level in levels
        if level in LEVEL_FUNCTIONS
    )

    def encode(value: str) -> tuple[bytes, bytes]:
        parts: list[bytes] = []
        counts: list[int] = []
        on_assigned_day = bool(assigned) and value[5:] in assigned
        for digests, function, kept in functions:
            values = function(value) if kept or not on_assigned_day else ()
            parts.append(digests(values))
            counts.append(len(values))
        return b"".join(parts), bytes(counts)

    return lru_cache(maxsize=_CACHE_SIZE)(encode) if cached else encode


def _pair_encoder(
    comparison: str, levels: Sequence[str], *, cached: bool
) -> Callable[[str, str | None], tuple[bytes, bytes]] | None:
    """(Value, the ``with_field``'s value) → the two-field levels' digests and counts.

    None for a comparison without two-field levels. Kept apart from the one-field levels,
    whose cache is by the value alone: a pair of names repeats far less than one name. A
    missing second value is handed over as ``""``: ``either_order`` then has no value,
    ``any_given`` the given name alone.
    """
    functions = tuple(
        (LevelDigests(comparison, level).digests, PAIR_LEVEL_FUNCTIONS[level])
        for level in levels
        if level in PAIR_LEVEL_FUNCTIONS
    )
    if not functions:
        return None

    def encode(value: str, other: str | None) -> tuple[bytes, bytes]:
        parts: list[bytes] = []
        counts: list[int] = []
        for digests, function in functions:
            values = function(value, other or "")
            parts.append(digests(values))
            counts.append(len(values))
        return b"".join(parts), bytes(counts)

    return lru_cache(maxsize=_CACHE_SIZE)(encode) if cached else encode
