"""Why a value did not normalise: the kinds of missing value the quality report counts."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Defect"]


class Defect(IntEnum):
    """A value that is not used: it becomes ``None`` in a :class:`NormalisedRecord`.

    An ``IntEnum`` so that the quality report can count outcomes by index (0 is "valid").

    Attributes:
        MISSING: empty, or nothing left after cleaning (``"  "``, ``"-"``).
        INVALID: present but not a valid value (bad check digit, impossible date).
        PLACEHOLDER: a default or "unknown" value (``0000000000``, ``1900-01-01``, ``BABY``).
        PARTIAL: a date of birth with only its year, or its year and month (``00/00/1980``,
            FHIR ``1980-03``): not a date, so no key or token that needs one forms, but its
            parts are kept apart (``NormalisedRecord.date_of_birth_partial``) for the
            evidence they support (docs/normalisation.md, "Partial dates of birth").
    """

    MISSING = 1
    INVALID = 2
    PLACEHOLDER = 3
    PARTIAL = 4
