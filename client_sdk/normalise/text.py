"""Free-text identifiers: the first address line and another local identifier.

Address line: transliterated (symbols such as emoji dropped first), upper case, apostrophes
deleted, other punctuation as spaces, and the last word's common abbreviation written out
(``12 High St.`` → ``12 HIGH STREET``).
Other id: upper case, letters and digits only (``ab-123 456`` → ``AB123456``).
Placeholder words (``NO FIXED ABODE``, ``UNKNOWN``, ``N/A``) are missing values.
"""

from __future__ import annotations

import re

from client_sdk.normalise.defect import Defect
from client_sdk.normalise.placeholders import is_placeholder_generic
from client_sdk.normalise.transliterate import to_ascii

__all__ = ["STREET_ABBREVIATIONS", "check_address_line", "check_other_id"]

STREET_ABBREVIATIONS = {
    "ST": "STREET",
    "RD": "ROAD",
    "AVE": "AVENUE",
    "AV": "AVENUE",
    "LN": "LANE",
    "DR": "DRIVE",
    "CL": "CLOSE",
    "CRES": "CRESCENT",
    "CT": "COURT",
    "GDNS": "GARDENS",
    "GRN": "GREEN",
    "GR": "GROVE",
    "GRV": "GROVE",
    "PL": "PLACE",
    "SQ": "SQUARE",
    "TER": "TERRACE",
    "TERR": "TERRACE",
    "PDE": "PARADE",
    "WY": "WAY",
}
_NOT_ALNUM = re.compile(r"[^A-Z0-9]+")


def _words(raw: str) -> list[str]:
    text = to_ascii(raw)
    return _NOT_ALNUM.sub(" ", text.upper().replace("'", "")).split()


def check_address_line(raw: str) -> str | Defect:
    """Canonical first address line, or a :class:`Defect` when missing or a placeholder.

    Args:
        raw: e.g. ``"12, St John's Rd."``.

    Returns:
        e.g. ``"12 ST JOHNS ROAD"``.
    """
    words = _words(raw)
    if not words:
        return Defect.MISSING
    if is_placeholder_generic(" ".join(words)):
        return Defect.PLACEHOLDER
    if len(words) > 1:
        words[-1] = STREET_ABBREVIATIONS.get(words[-1], words[-1])
    return " ".join(words)


def check_other_id(raw: str) -> str | Defect:
    """Canonical other identifier (letters and digits only), or a :class:`Defect`.

    Args:
        raw: e.g. ``"ab-123 456"``.

    Returns:
        e.g. ``"AB123456"``; a value of one repeated character is a placeholder.
    """
    words = _words(raw)
    if not words:
        return Defect.MISSING
    compact = "".join(words)
    if is_placeholder_generic(" ".join(words)) or compact == compact[0] * len(compact):
        return Defect.PLACEHOLDER
    return compact
