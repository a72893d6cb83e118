"""The evidence the probabilistic stage reads: each record's block and comparison tokens.

The SDK derives, under every blocking key whose fields a record has, one block token and
one short comparison token per value of each comparison level (docs/probabilistic.md).
:class:`Layout` says which comparison-token column is which (blocking key, comparison,
level); :class:`RecordEvidence` is one record's tokens in that layout. Two records are
compared only under a blocking key whose block token they share, and only through the
columns of that key: the comparison tokens of two blocks are unrelated by design.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["MISSING", "BlockLayout", "Layout", "RecordEvidence", "agreement"]


@dataclass(frozen=True, slots=True)
class BlockLayout:
    """The comparisons derived under one blocking key.

    Attributes:
        name: the blocking key's name.
        comparisons: the names of the comparisons derived under it, in spec order.
        levels: per comparison, its level names, strongest first.
        columns: per comparison, the evidence column of each level.
    """

    name: str
    comparisons: tuple[str, ...]
    levels: tuple[tuple[str, ...], ...]
    columns: tuple[tuple[int, ...], ...]


@dataclass(frozen=True, slots=True)
class Layout:
    """Which evidence column is which: per blocking key, its comparisons and their levels."""

    blocks: tuple[BlockLayout, ...]

    @classmethod
    def from_columns(
        cls, block_names: Sequence[str], columns: Sequence[tuple[int, str, str]]
    ) -> Layout:
        """The layout of a chunk's evidence (``keys.chunk.ChunkEvidence`` names and columns).

        Columns come by blocking key, then comparison, then level strongest first.
        """
        blocks: list[BlockLayout] = []
        for j, name in enumerate(block_names):
            names: list[str] = []
            levels: dict[str, list[str]] = {}
            cols: dict[str, list[int]] = {}
            for index, (block, comparison, level) in enumerate(columns):
                if block != j:
                    continue
                if comparison not in levels:
                    names.append(comparison)
                    levels[comparison], cols[comparison] = [], []
                levels[comparison].append(level)
                cols[comparison].append(index)
            blocks.append(
                BlockLayout(
                    name,
                    tuple(names),
                    tuple(tuple(levels[c]) for c in names),
                    tuple(tuple(cols[c]) for c in names),
                )
            )
        return cls(tuple(blocks))


@dataclass(frozen=True, slots=True)
class RecordEvidence:
    """One record's evidence, as the engine holds it.

    Attributes:
        record: the engine's number for the record (unique, stable, never reused).
        dataset: the record's dataset.
        blocks: per blocking key, the record's block token, or ``None``.
        cells: per evidence column, the record's comparison tokens there (often one).
    """

    record: int
    dataset: str
    blocks: tuple[bytes | None, ...]
    cells: tuple[tuple[bytes, ...], ...]


MISSING = -1
"""An agreement level where either record has no value for the comparison."""


def agreement(layout: BlockLayout, a: RecordEvidence, b: RecordEvidence) -> tuple[int, ...]:
    """The agreement vector of two records that share the block of ``layout``.

    Per comparison: the index of the strongest level at which they share a token; the
    number of levels when both have a value and no level agrees (disagreement); or
    :data:`MISSING` when either has none.
    """
    out: list[int] = []
    for columns in layout.columns:
        level = MISSING
        a_any = b_any = False
        for k, column in enumerate(columns):
            left, right = a.cells[column], b.cells[column]
            a_any = a_any or bool(left)
            b_any = b_any or bool(right)
            if not left or not right:
                continue
            if len(left) == 1 and len(right) == 1:  # the usual cell: one token each
                if left[0] == right[0]:
                    level = k
                    break
            elif not set(left).isdisjoint(right):
                level = k
                break
        if level == MISSING and a_any and b_any:
            level = len(columns)
        out.append(level)
    return tuple(out)
