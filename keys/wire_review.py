"""The review list an organisation downloads: doubts about its own records (``GET /v1/review``).

Each item is one of the organisation's own records (its dataset and opaque reference,
which only its local index maps to a local id), the kind of doubt, the other dataset's
id, and which evidence agreed or disagreed — comparison or match key names and levels.
Never the other record's reference, values, tokens or record number (docs/review.md).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from keys.wire import Name

__all__ = ["Doubt", "EvidenceOut", "Outcome", "ReviewItem", "ReviewOut"]


class Doubt(StrEnum):
    """Why a record is on the review list."""

    POSSIBLE_MATCH = "possible_match"
    """The probabilistic stage scored a pair in the grey zone: maybe one person, not linked."""
    KEY_CONFLICT = "key_conflict"
    """A weaker match key pointed at another person than the stronger one it joined by."""
    TWIN_CONFLICT = "twin_conflict"
    """Its key reached a person that already holds a record of its own dataset (twins?)."""
    MERGE_CONFLICT = "merge_conflict"
    """Its strongest key reached two persons that could not be merged."""


class Outcome(StrEnum):
    """How one piece of evidence compared between the record and the other one."""

    AGREES = "agrees"
    DISAGREES = "disagrees"
    NOT_COMPARED = "not_compared"
    """One of the two records has no value for it."""


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EvidenceOut(_Wire):
    """One comparison (probabilistic) or match key (cascade) and how it came out.

    ``level`` is the comparison level reached (``exact``, ``nickname``, ``initial``…,
    ``disagree``) or, for a match key, ``token`` (agreeing) / ``disagree``; empty when
    not compared.
    """

    evidence: Annotated[str, Field(min_length=1, max_length=64)]
    level: Annotated[str, Field(max_length=64)]
    outcome: Outcome


class ReviewItem(_Wire):
    """One doubt about one of the organisation's own records."""

    domain: Name
    dataset: Name
    """The organisation's own dataset."""
    ref: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    """The organisation's own reference (hex): its local index maps it to a local id."""
    doubt: Doubt
    other_dataset: Annotated[str, Field(min_length=1, max_length=200)]
    """The other record's dataset id (``org/name``): nothing else of it."""
    probability: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    """The pair's match probability (possible matches only)."""
    blocking_key: Annotated[str, Field(max_length=64)] = ""
    """The blocking key that made the pair a candidate (possible matches only)."""
    evidence: list[EvidenceOut]


class ReviewOut(_Wire):
    """The caller's review list, and how many items of each kind it holds."""

    items: list[ReviewItem]
    counts: dict[str, int]
