"""The agreement-pattern counts the probabilistic model is fitted from, kept as records come.

A fit needs, per blocking key, how many pairs inside one of its blocks have each
agreement vector: pairs of two datasets (the candidates), those of them the exact
cascade had already linked (known matches) and pairs of one dataset (known non-matches
when the dataset holds one record per person; counted per dataset, since that
declaration is read when the model is fitted). The mirror keeps these counts exact as
evidence is added, changed and dropped (:meth:`LinkageMirror.set_evidence`), so a refit
runs EM over the counts (:func:`broker.matching.incremental.fit_counts`) instead of
reading the holding again, and every slice's write carries its changes to Redis (one
``HINCRBY`` per pattern changed, in the scope's model hash), so a new worker continues
the same counts (docs/keyspace.md).

Each count is one field of that hash: a zero byte (never the start of ``layout`` or
``model``), the kind, the blocking key's index, for one-dataset pairs the dataset
number, then each comparison's level plus one (``MISSING`` is -1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

__all__ = [
    "CANDIDATE",
    "FIELD_PREFIX",
    "KNOWN",
    "SAME",
    "parse_field",
    "pattern_field",
]

FIELD_PREFIX: Final = b"\x00"
CANDIDATE: Final = ord("c")
"""A pair of records of two datasets that share a block."""
KNOWN: Final = ord("k")
"""A candidate pair whose two records were one person when it was counted."""
SAME: Final = ord("s")
"""A pair of records of one dataset that share a block (counted per dataset)."""


def pattern_field(kind: int, block: int, vector: Sequence[int], dsn: int = 0) -> bytes:
    """The hash field of one count (``dsn`` only for :data:`SAME`)."""
    head = FIELD_PREFIX + bytes((kind, block))
    if kind == SAME:
        head += dsn.to_bytes(4, "big")
    return head + bytes([level + 1 for level in vector])


def parse_field(field: bytes) -> tuple[int, int, int, tuple[int, ...]]:
    """``(kind, block, dsn, vector)`` of a field :func:`pattern_field` made."""
    kind, block = field[1], field[2]
    at, dsn = 3, 0
    if kind == SAME:
        dsn = int.from_bytes(field[3:7], "big")
        at = 7
    return kind, block, dsn, tuple([level - 1 for level in field[at:]])
