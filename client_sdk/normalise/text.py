"""Free-text identifiers: the address line and another local identifier.

Address line: transliterated (symbols such as emoji dropped first), upper case, apostrophes
deleted, other punctuation as spaces, and the last word's common abbreviation written out
(``12 High St.`` → ``12 HIGH STREET``). An address in several columns is each line so
cleaned, then the lines joined with a space (:func:`check_address_lines`).
Other id: upper case, letters and digits only (``ab-123 456`` → ``AB123456``).
Placeholder words (``NO FIXED ABODE``, ``UNKNOWN``, ``N/A``) are missing values.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from client_sdk.normalise.defect import Defect
from client_sdk.normalise.placeholders import is_placeholder_generic, payload_value
from client_sdk.normalise.transliterate import to_ascii

__all__ = [
    "STREET_ABBREVIATIONS",
    "check_address_line",
    "check_address_lines",
    "check_other_id",
]

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


def check_address_lines(cells: Sequence[str]) -> str | Defect:
    """Canonical address of several lines (columns): each line cleaned, joined with a space.

    Each line is cleaned as :func:`check_address_line` cleans one (so each line's last
    word has its abbreviation written out: ``12`` | ``High St`` | ``Flat 2`` →
    ``12 HIGH STREET FLAT 2``). Empty lines and database null markers (``NULL``, ``N/A``)
    are skipped; a line that says the address is not known (``No fixed abode``,
    ``Unknown``) makes the whole address a placeholder, even beside a town.

    Args:
        cells: the address lines in the mapping's column order.

    Returns:
        The joined lines, or MISSING (no line has a value) or PLACEHOLDER (a "not known"
        line, or only null markers).
    """
    lines: list[str] = []
    null_marker = False
    for cell in cells:
        line = check_address_line(cell)
        if isinstance(line, str):
            lines.append(line)
        elif line is Defect.PLACEHOLDER:
            if payload_value(cell) is not None:
                return Defect.PLACEHOLDER
            null_marker = True
    if lines:
        return " ".join(lines)
    return Defect.PLACEHOLDER if null_marker else Defect.MISSING


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
