"""The evidence linter: refuses blocking keys with blocks too large, and comparison
values too common inside their blocks.

The probabilistic stage's tokens are keyed under a block (docs/probabilistic.md), so the
broker learns only which records of a block share a comparison value — never a field's
frequency across the whole holding. What is left to limit is inside a block:

- a *blocking key* whose largest block holds more than ``max_block`` records is refused.
  The broker compares every pair of a block, and skips a block past its cap
  (``broker.matching.DEFAULT_MAX_BLOCK``), so such a key is slow where it works and
  silently makes no candidates where it does not; and one large block is itself a
  frequency signal (the most common name code, the commonest date);
- a *comparison* whose token inside some block is held by more than ``max_shared``
  records of the dataset is refused: a token carried by that many records of one block
  partitions the block into a few large groups (sex, initial, year of birth under a
  name block), the frequency profile a dictionary attack starts from.

Counts run on the organisation's own data before anything leaves, over the tokeniser's
own inputs (the block values and the level digests), and are never written or shown.

**Memory stays small at a million rows.** Counting every (block, comparison value) pair
of every record held about 80 entries a record (some 17 GB at 1,000,000 rows). The
linter reads the extract twice instead: the first pass keeps only an 8-byte hash of each
record's block values and counts the blocks; the second counts comparison values only
inside blocks of more than ``max_shared`` records, since a smaller block cannot have
more than ``max_shared`` records share anything. A comparison's ``largest`` is therefore
exact whenever it exceeds ``max_shared`` (the only case that refuses); below it, the
linter says "at most ``max_shared``" when no block was large enough to count.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from hashlib import blake2b
from itertools import groupby

from client_sdk.record import NormalisedRecord
from client_sdk.tokenise import TokeniseParams, Tokeniser
from keys.derive import DomainKey
from keys.spec import LinkageSpec

__all__ = [
    "DEFAULT_MAX_BLOCK",
    "DEFAULT_MAX_SHARED",
    "EvidenceLint",
    "lint_evidence",
]

DEFAULT_MAX_BLOCK = 500
"""Records in a blocking key's largest block at most (the broker's cap)."""
DEFAULT_MAX_SHARED = 100
"""Records of one dataset sharing one comparison token inside one block at most."""


@dataclass(frozen=True, slots=True)
class EvidenceLint:
    """The linter's verdict on one blocking key or one comparison.

    Attributes:
        kind: ``"blocking key"`` or ``"comparison"``.
        name: its name in the spec.
        largest: the largest block (blocking key), or the most records sharing one
            comparison token inside one block (comparison, over every blocking key):
            exact when above ``max_shared``, otherwise a bound (module docstring).
        verdict: ``"ok"`` or ``"refused"``.
        reason: why, in words, without any value.
    """

    kind: str
    name: str
    largest: int
    verdict: str
    reason: str


def _hash(value: bytes) -> int:
    """An 8-byte hash of a block value: blocks are told apart, never kept."""
    return int.from_bytes(blake2b(value, digest_size=8).digest(), "big")


def _blocks(hashes: array[int], *, over: int) -> tuple[int, set[int]]:
    """The largest block's size and the blocks of more than ``over`` records, from one
    blocking key's block hashes (one per record that has the key), sorted once."""
    largest, large = 0, set()
    for block, run in groupby(sorted(hashes)):
        size = sum(1 for _ in run)
        largest = max(largest, size)
        if size > over:
            large.add(block)
    return largest, large


def lint_evidence(
    read_records: Callable[[], Iterable[NormalisedRecord]],
    spec: LinkageSpec,
    *,
    max_block: int = DEFAULT_MAX_BLOCK,
    max_shared: int = DEFAULT_MAX_SHARED,
    assigned_birthdays: frozenset[str] = frozenset(),
) -> list[EvidenceLint]:
    """Judge every blocking key and comparison of ``spec`` on one dataset's records.

    Args:
        read_records: gives the dataset's records from the start, each time it is called
            (the extract is read twice: module docstring).
        assigned_birthdays: the days the extract heaps its dates of birth on
            (:func:`client_sdk.quality.assigned_birthdays`): on them tokenising forms no
            block that rests on the day of birth (a hostel's residents all "born" on
            1 January share no ``dob`` block), so none is counted.

    Returns:
        One verdict per blocking key, then one per comparison, in spec order.
    """
    tokeniser = Tokeniser(
        TokeniseParams(
            spec=spec,
            domain_key=DomainKey(bytes(32)),  # the inputs are counted, never the tokens
            domain="lint",
            key_version="lint",
            reference_secret=bytes(32),
            dataset="lint",
            assigned_birthdays=assigned_birthdays,
        )
    )
    n_blocks = len(spec.blocking_keys)
    hashes = [array("Q") for _ in range(n_blocks)]
    for record in read_records():
        for j, value in enumerate(tokeniser.block_values_of_row(tokeniser.row(record))):
            if value is not None:
                hashes[j].append(_hash(value))
    largest_block, large = zip(*(_blocks(h, over=max_shared) for h in hashes), strict=True)
    del hashes
    shared: Counter[tuple[int, int, int, bytes]] = Counter()
    if any(large):
        for record in read_records():
            row = tokeniser.row(record)
            for j, value in enumerate(tokeniser.block_values_of_row(row)):
                if value is None or not large[j]:
                    continue
                block = _hash(value)
                if block in large[j]:
                    for column, digest in tokeniser.comparison_digests_of_row(row, j):
                        shared[(j, block, column, digest)] += 1
    out: list[EvidenceLint] = []
    for j, key in enumerate(spec.blocking_keys):
        largest = largest_block[j]
        refused = largest > max_block
        reason = (
            f"its largest block holds {largest} records, more than {max_block}: the broker "
            "would compare too many pairs there and skips such blocks"
            if refused
            else f"largest block {largest} records (at most {max_block})"
        )
        out.append(
            EvidenceLint("blocking key", key.name, largest, "refused" if refused else "ok", reason)
        )
    column_comparison = [col.comparison for col in spec.evidence_columns]
    # Blocks of at most max_shared records were not counted: they bound what they hold.
    uncounted = min(max_shared, max(largest_block, default=0))
    most = [uncounted] * len(spec.comparisons)
    for (_, _, column, _), count in shared.items():
        c = column_comparison[column]
        most[c] = max(most[c], count)
    for c, comparison in enumerate(spec.comparisons):
        refused = most[c] > max_shared
        reason = (
            f"one of its tokens is held by {most[c]} records of one block, more than "
            f"{max_shared}: inside the block it tells large groups apart"
            if refused
            else f"at most {most[c]} records share one of its tokens in a block"
        )
        out.append(
            EvidenceLint(
                "comparison", comparison.name, most[c], "refused" if refused else "ok", reason
            )
        )
    return out
