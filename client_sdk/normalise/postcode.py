"""Postcodes: the canonical UK form (``BA1 1AA``) with district (``BA1``) and sector (``BA1 1``).

UK postcodes are upper-cased, stripped of everything but letters and digits (a letter O,
I, L or S where the inward code's digit must be is read as 0, 1, 1 or 5), checked
against the Royal Mail format (outward code, a space, inward code of a digit and two
letters) and written with one space. The NHS pseudo-postcodes ``ZZ99 …`` ("no fixed abode",
"not known") and words such as ``NFA`` are placeholders.

For any other country (the mapping's ``[source] country``) the canonical form is the value
upper-cased with letters and digits only; no format check, no district or sector.
"""

from __future__ import annotations

import re

from client_sdk.normalise.defect import Defect
from client_sdk.normalise.placeholders import (
    PLACEHOLDER_POSTCODE_OUTWARD,
    is_placeholder_generic,
)

__all__ = [
    "UK_COUNTRIES",
    "check_postcode",
    "normalise_postcode",
    "postcode_district",
    "postcode_sector",
]

UK_COUNTRIES = frozenset({"GB", "UK"})

_NOT_ALNUM = re.compile(r"[^A-Z0-9]+")
_UK = re.compile(
    r"(?P<out>[A-PR-UWYZ](?:[0-9]{1,2}|[A-HK-Y][0-9]{1,2}|[0-9][A-HJKPS-UW]|[A-HK-Y][0-9][ABEHMNPRV-Y])"
    r"|GIR)"
    r"(?P<in>[0-9][ABD-HJLNP-UW-Z]{2})"
)
# The inward code starts with a digit: a letter there is a typing slip (BA1 OAA).
_DIGIT_LOOKALIKES = {"O": "0", "I": "1", "L": "1", "S": "5"}
_PSEUDO = re.compile(r"(?P<out>[A-Z]{1,2}[0-9]{1,2})(?P<in>[0-9][A-Z]{2})")


def check_postcode(raw: str, *, country: str = "GB") -> str | Defect:
    """Normalise a postcode, or say why it cannot be used.

    Args:
        raw: the postcode as written (any case and spacing).
        country: ISO 3166 alpha-2 code of the source; ``"GB"`` (or ``"UK"``) checks the
            UK format.

    Returns:
        The canonical postcode, or :class:`Defect` MISSING, INVALID or PLACEHOLDER.
    """
    upper = raw.upper()
    compact = _NOT_ALNUM.sub("", upper)
    if not compact:
        return Defect.MISSING
    if is_placeholder_generic(" ".join(_NOT_ALNUM.sub(" ", upper).split())):
        return Defect.PLACEHOLDER
    if country.upper() not in UK_COUNTRIES:
        return compact
    if len(compact) >= 5 and compact[-3] in _DIGIT_LOOKALIKES:
        compact = compact[:-3] + _DIGIT_LOOKALIKES[compact[-3]] + compact[-2:]
    match = _UK.fullmatch(compact)
    if match is None:
        pseudo = _PSEUDO.fullmatch(compact)
        if pseudo is not None and pseudo["out"] in PLACEHOLDER_POSTCODE_OUTWARD:
            return Defect.PLACEHOLDER
        return Defect.INVALID
    if match["out"] in PLACEHOLDER_POSTCODE_OUTWARD:
        return Defect.PLACEHOLDER
    return f"{match['out']} {match['in']}"


def normalise_postcode(raw: str, *, country: str = "GB") -> str | None:
    """The canonical postcode, or ``None`` when missing, invalid or a placeholder."""
    result = check_postcode(raw, country=country)
    return result if isinstance(result, str) else None


def postcode_district(canonical: str) -> str:
    """The postcode district (outward code) of a canonical UK postcode: ``BA1 1AA`` → ``BA1``.

    A canonical non-UK postcode (no space) has no district: it is returned whole, so a match
    key on the district is never coarser than intended.
    """
    outward, space, _ = canonical.partition(" ")
    return outward if space else canonical


def postcode_sector(canonical: str) -> str:
    """The postcode sector of a canonical UK postcode: ``BA1 1AA`` → ``BA1 1``.

    A canonical non-UK postcode (no space) is returned whole, as for
    :func:`postcode_district`.
    """
    return canonical[:-2] if " " in canonical else canonical
