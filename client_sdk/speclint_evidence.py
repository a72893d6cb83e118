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
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

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
            comparison token inside one block (comparison, over every blocking key).
        verdict: ``"ok"`` or ``"refused"``.
        reason: why, in words, without any value.
    """

    kind: str
    name: str
    largest: int
    verdict: str
    reason: str


def lint_evidence(
    records: Iterable[NormalisedRecord],
    spec: LinkageSpec,
    *,
    max_block: int = DEFAULT_MAX_BLOCK,
    max_shared: int = DEFAULT_MAX_SHARED,
) -> list[EvidenceLint]:
    """Judge every blocking key and comparison of ``spec`` on one dataset's records.

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
        )
    )
    n_blocks = len(spec.blocking_keys)
    blocks: list[Counter[bytes]] = [Counter() for _ in range(n_blocks)]
    shared: Counter[tuple[int, bytes, int, bytes]] = Counter()
    for record in records:
        row = tokeniser.row(record)
        for j, value in enumerate(tokeniser.block_values_of_row(row)):
            if value is None:
                continue
            blocks[j][value] += 1
            for column, digest in tokeniser.comparison_digests_of_row(row, j):
                shared[(j, value, column, digest)] += 1
    out: list[EvidenceLint] = []
    for j, key in enumerate(spec.blocking_keys):
        largest = max(blocks[j].values(), default=0)
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
    most = [0] * len(spec.comparisons)
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
