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

**The sample.** Past :data:`SAMPLE_FROM` evidence records, the counts are kept on a
sample of blocks only: a block is in the sample at *shift* ``s`` when the first ``s``
bits of its stored block token are zero (:func:`in_sample`), a rate of ``2**-s`` fixed by
the token alone, so whoever counts, in whatever order and at whatever cut, counts the
same blocks. The shift only grows, by one each time the holding doubles past
:data:`SAMPLE_FROM` (:func:`sample_shift`), and the samples are nested (the blocks of
shift ``s + 1`` are some of those of ``s``): moving on takes away the pairs of the blocks
that leave and counts nothing again. The stored block token is a keyed hash, so whether
a block is sampled says nothing of its records or their agreement: the counts stay a
fair sample of every key's pairs, and EM's ratios (``m``, ``u``, the prior, the
model's expected share of wrong links) are estimated from them without bias.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

__all__ = [
    "CANDIDATE",
    "FIELD_PREFIX",
    "KNOWN",
    "SAME",
    "SAMPLE_FROM",
    "field_head",
    "in_sample",
    "parse_field",
    "pattern_field",
    "sample_shift",
]

FIELD_PREFIX: Final = b"\x00"
CANDIDATE: Final = ord("c")
"""A pair of records of two datasets that share a block."""
KNOWN: Final = ord("k")
"""A candidate pair whose two records were one person when it was counted."""
SAME: Final = ord("s")
"""A pair of records of one dataset that share a block (counted per dataset)."""
SAMPLE_FROM: Final = 20_000
"""Evidence records past which the counts are kept on a sample of blocks: about this many
records' blocks (between half and all of it) whatever the holding's size (10,000 was
tried: cheaper, but recall fell by 0.0006 at 1,000,000 records a side;
docs/linkage-measured-engine-cost.md)."""
_MAX_SHIFT: Final = 32


def pattern_field(kind: int, block: int, vector: Sequence[int], dsn: int = 0) -> bytes:
    """The hash field of one count (``dsn`` only for :data:`SAME`)."""
    return field_head(kind, block, dsn) + bytes([level + 1 for level in vector])


def field_head(kind: int, block: int, dsn: int = 0) -> bytes:
    """What a count's field holds before its levels: the field is this, then each
    comparison's level plus one (``broker.store.linkage_evidence.raw_levels``)."""
    head = FIELD_PREFIX + bytes((kind, block))
    if kind == SAME:
        head += dsn.to_bytes(4, "big")
    return head


def parse_field(field: bytes) -> tuple[int, int, int, tuple[int, ...]]:
    """``(kind, block, dsn, vector)`` of a field :func:`pattern_field` made."""
    kind, block = field[1], field[2]
    at, dsn = 3, 0
    if kind == SAME:
        dsn = int.from_bytes(field[3:7], "big")
        at = 7
    return kind, block, dsn, tuple([level - 1 for level in field[at:]])


def sample_shift(held: int, sample_from: int = SAMPLE_FROM) -> int:
    """The smallest shift at which the sample holds at most ``sample_from`` of ``held``
    evidence records' blocks, on average."""
    shift = 0
    while shift < _MAX_SHIFT and held > sample_from << shift:
        shift += 1
    return shift


def in_sample(block_key: bytes, shift: int) -> bool:
    """Whether the block of index key ``block_key`` (the blocking key's index byte, then
    the stored block token) is counted at ``shift``."""
    if shift <= 0:
        return True
    return int.from_bytes(block_key[1:5], "big") >> (_MAX_SHIFT - shift) == 0
